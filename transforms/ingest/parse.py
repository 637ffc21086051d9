"""Parse digest dumps: raw bytes of one file -> records and dead letters.

Everything here is pure Python over iterables, so it is unit-tested without Beam and the
Beam adapter (:mod:`transforms.ingest.read`) stays a few lines. Files are consumed as a stream of
bounded lines: memory stays bounded whatever the file size.

Layouts understood (both seen in real dumps):

* *spaced*: header lines (``new``, ``Get trending papers…``, ``Subscribe``,
  ``byAK and the research community``), a date line (``Mar 13``), then title / abstract
  lines, all separated by blank lines;
* *compact*: no blank lines, no date line, ``Subscribe`` glued to the first title.

Title vs abstract is decided by the *shape* of a line, not by alternation alone, so one
missing abstract costs exactly one record (dead-lettered) and never shifts the pairing of
the records after it. See :func:`line_shape`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from transforms.records import DeadLetter, Record, make_record_id
from transforms.text import clean_text, code_urls, content_hash

HEADER_LINES = frozenset(
    {
        "new",
        "subscribe",
        "get trending papers in your email inbox!",
        "get trending papers in your email inbox once a day!",
        "byak and the research community",
    }
)
_GLUED_SUBSCRIBE = re.compile(r"^Subscribe(?=[^a-z\s])")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
# Month names abbreviated or in full only: a title such as ``Mayhem 12`` or ``Decoder 2`` is
# not a date line (a looser ``may[a-z]*`` would swallow it and shift the pairing after it).
_DATE_LINE = re.compile(
    r"^(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.? +(?P<day>\d{1,2})"
    r"(?:,? +(?P<year>\d{4}))?$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")

# Line-shape limits, measured on real dumps: titles are at most 174 chars / 22 words,
# abstracts at least 477 chars / 69 words. The gap between them is wide; the limits sit in it.
ABSTRACT_MIN_CHARS = 250
ABSTRACT_MIN_WORDS = 40
TITLE_MAX_WORDS = 35

# Reasons a dead letter can carry (documented in README "Dead letters").
MISSING_ABSTRACT = "missing_abstract"
ORPHAN_ABSTRACT = "orphan_abstract"
EMPTY_AFTER_CLEANING = "empty_after_cleaning"
BAD_DATE_LINE = "bad_date_line"
LINE_TOO_LONG = "line_too_long"
EMPTY_FILE = "empty_file"
BINARY_FILE = "binary_file"
NO_RECORDS = "no_records"
READ_ERROR = "read_error"
NOT_A_FILE = "not_a_file"  # a FIFO, a directory, a device: never opened


class Shape(Enum):
    TITLE = "title"
    ABSTRACT = "abstract"
    EITHER = "either"


def line_shape(line: str) -> Shape:
    """Classify a content line by its shape.

    * ABSTRACT: long (chars or words) or several sentences — never a title.
    * TITLE: short, at most one sentence break, no final period — never an abstract.
    * EITHER: anything else (e.g. a short abstract ending in a period); it takes the role
      the pairing expects.
    """
    # Cheapest test first: most lines are abstracts long enough to need no other count.
    if len(line) >= ABSTRACT_MIN_CHARS:
        return Shape.ABSTRACT
    words = len(line.split())
    if words >= ABSTRACT_MIN_WORDS or _sentence_breaks(line) >= 2:
        return Shape.ABSTRACT
    if words <= TITLE_MAX_WORDS and not line.endswith("."):
        return Shape.TITLE
    return Shape.EITHER


def _sentence_breaks(line: str) -> int:
    if "." not in line and "!" not in line and "?" not in line:
        return 0
    return len(_SENTENCE_END.findall(line))


def is_header(line: str) -> bool:
    return line.casefold() in HEADER_LINES


def parse_date_line(line: str, year: int | None) -> dt.date | None | bool:
    """``False`` if ``line`` is not a date line; else the date (``None`` without a year).

    Raises ValueError for a date line naming an impossible day (``Feb 30``).
    """
    match = _DATE_LINE.match(line)
    if not match:
        return False
    month, day = _MONTHS[match["month"][:3].lower()], int(match["day"])
    year = int(match["year"]) if match["year"] else year
    if year is None:
        dt.date(2000, month, day)  # still refuse a day no year has (Feb 30); 2000 is leap
        return None
    return dt.date(year, month, day)


@dataclass(frozen=True)
class FileContext:
    """What the parser knows about a file besides its lines.

    ``year`` completes ``Mar 13``-style date lines; ``default_date`` is used for pages with
    no date line (the compact layout). See :func:`file_context`.
    """

    source_file: str
    year: int | None = None
    default_date: dt.date | None = None


class TooLongLine(str):
    """Marker for a line cut at the reader's limit; its text is only an excerpt."""


def is_long(line: str) -> bool:
    """An abstract by its length alone (no title is this long)."""
    return len(line) >= ABSTRACT_MIN_CHARS or len(line.split()) >= ABSTRACT_MIN_WORDS


def is_doubtful_title(line: str) -> bool:
    """Abstract-shaped by its sentences only: title-sized, no final period, ≥ 2 sentence breaks
    ("Is Attention Enough? Do Transformers Dream?"). The line alone cannot tell; the pair can:
    it is a title when the next content line is an abstract by its length (see :class:`_Pairing`).
    """
    return (
        len(line) < ABSTRACT_MIN_CHARS
        and not line.endswith(".")
        and _sentence_breaks(line) >= 2
        and len(line.split()) <= TITLE_MAX_WORDS
    )


def parse_lines(lines: Iterable[str], ctx: FileContext) -> Iterator[Record | DeadLetter]:
    """Turn the decoded lines of one file into records and dead letters, in file order.

    Every line that is not blank, a header or a date line ends up in exactly one record or
    one dead letter. ``record_index`` counts record *slots* (title+abstract, a title without
    abstract, an abstract without title, a line too long to keep with its title) from 0, so
    dead-lettered slots keep their place; only a bad date line has no slot.
    """
    pairing = _Pairing(ctx)
    for raw in lines:
        if isinstance(raw, TooLongLine):
            yield from pairing.too_long(raw)
            continue
        line = raw.strip()
        if not line or is_header(line):
            continue
        if line.startswith("Subscribe"):
            line = _GLUED_SUBSCRIBE.sub("", line)
        try:
            date = parse_date_line(line, ctx.year)
        except ValueError:
            yield from pairing.settle()
            yield DeadLetter.of(ctx.source_file, None, BAD_DATE_LINE, line)
            continue
        if date is not False:
            yield from pairing.settle()
            pairing.date = date
            continue
        yield from pairing.content(line)
    yield from pairing.settle()
    yield from pairing.lone_title()


class _Pairing:
    """Pairs the content lines of one file into record slots.

    A line's shape decides its role (:func:`line_shape`), except for a doubtful title
    (:func:`is_doubtful_title`): it is held for one content line and is a title if that line
    is an abstract by its length, else an abstract as its shape says. Anything else in
    between (a date line, the end of the file) settles it as an abstract.
    """

    def __init__(self, ctx: FileContext) -> None:
        self._source = ctx.source_file
        self._slot = 0
        self._title: str | None = None
        self._held: str | None = None
        self.date = ctx.default_date

    def content(self, line: str) -> Iterator[Record | DeadLetter]:
        if self._held is not None and is_long(line):
            title, self._held = self._held, None
            yield from self.lone_title()
            yield make_record(self._source, self._take_slot(), self.date, title, line)
            return
        yield from self.settle()
        if is_doubtful_title(line):
            self._held = line
        else:
            yield from self._place(line, line_shape(line))

    def too_long(self, excerpt: str) -> Iterator[DeadLetter]:
        # Over the reader's limit, so an abstract by its length: it takes the slot of the
        # title before it (a held doubtful title included), and the slot cannot be kept.
        if self._held is not None:
            yield from self.lone_title()
            self._title, self._held = self._held, None
        title, self._title = self._title, None
        raw = excerpt if title is None else f"{title}\n{excerpt}"
        yield DeadLetter.of(self._source, self._take_slot(), LINE_TOO_LONG, raw)

    def settle(self) -> Iterator[Record | DeadLetter]:
        """Place a held doubtful title as the abstract its shape says it is."""
        if self._held is not None:
            line, self._held = self._held, None
            yield from self._place(line, Shape.ABSTRACT)

    def lone_title(self) -> Iterator[DeadLetter]:
        if self._title is not None:
            title, self._title = self._title, None
            yield DeadLetter.of(self._source, self._take_slot(), MISSING_ABSTRACT, title)

    def _place(self, line: str, shape: Shape) -> Iterator[Record | DeadLetter]:
        if self._title is None:
            if shape is Shape.ABSTRACT:
                yield DeadLetter.of(self._source, self._take_slot(), ORPHAN_ABSTRACT, line)
            else:
                self._title = line
            return
        if shape is Shape.TITLE:
            yield from self.lone_title()
            self._title = line
            return
        title, self._title = self._title, None
        yield make_record(self._source, self._take_slot(), self.date, title, line)

    def _take_slot(self) -> int:
        self._slot += 1
        return self._slot - 1


def make_record(
    source_file: str, record_index: int, digest_date: dt.date | None, title: str, abstract: str
) -> Record | DeadLetter:
    """Clean a title/abstract pair into a record (or a dead letter if nothing is left)."""
    clean_title, clean_abstract = clean_text(title), clean_text(abstract)
    if not clean_title or not clean_abstract:
        raw = f"{title}\n{abstract}"
        return DeadLetter.of(source_file, record_index, EMPTY_AFTER_CLEANING, raw)
    return Record(
        record_id=make_record_id(source_file, record_index),
        source_file=source_file,
        record_index=record_index,
        digest_date=digest_date,
        title=clean_title,
        abstract=clean_abstract,
        content_hash=content_hash(clean_title, clean_abstract),
        code_urls=code_urls(clean_abstract),
    )


_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)-(\d\d)-(\d\d)(?!\d)")
# Not glued to letters or digits: the hex ids in dump names (``ab2019fe``) are not years.
_YEAR = re.compile(r"(?<![0-9A-Za-z])((?:19|20)\d\d)(?![0-9A-Za-z])")


def file_context(
    source_file: str, modified_year: int | None = None, digest_year: int | None = None
) -> FileContext:
    """Where a file's dates come from (the documented rule).

    * ``default_date`` (pages without a date line): a ``YYYY-MM-DD`` in the file name.
    * ``year`` for ``Mar 13`` lines, first that exists: the ``--digest_year`` option, the year
      of that file-name date, a 4-digit year in the path, the file's last-modified year.
    """
    name = source_file.rsplit("/", 1)[-1]
    default_date = None
    match = _ISO_DATE.search(name)
    if match:
        try:
            default_date = dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            default_date = None
    year = digest_year
    if year is None and default_date is not None:
        year = default_date.year
    if year is None:
        path_year = _YEAR.search(source_file)
        year = int(path_year.group(1)) if path_year else modified_year
    return FileContext(source_file=source_file, year=year, default_date=default_date)
