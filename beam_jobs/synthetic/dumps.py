"""The digest page format: the two real layouts (spaced and compact headers), writing one page
(:class:`PageWriter`), which page of a corpus gets which layout, line endings, compression and
file name, and reading generated dumps back (:func:`open_dump`, :func:`read_slots`)."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from beam_jobs.synthetic.config import GeneratorConfig

# Header lines exactly as in the two real layouts.
SPACED_HEADER: tuple[str, ...] = (
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "byAK and the research community",
)
COMPACT_HEADER: tuple[str, ...] = (
    "Get trending papers in your email inbox once a day!",
    "Get trending papers in your email inbox!",
)
GLUED_PREFIX = "Subscribe"
UTF8_BOM = b"\xef\xbb\xbf"
# Generated titles are <= papers.TITLE_MAX_CHARS, abstracts >= perturbations.TRUNCATE_MIN_CHARS:
# the reference reader tells them apart by length at this point between the two.
SHAPE_SPLIT_CHARS = 250


# ============================================================================================
# Writing
# ============================================================================================


class PageWriter:
    """Streams one digest page in either layout, with optional CRLF + BOM and compression."""

    FLUSH_CHARS = 1 << 18

    def __init__(
        self, stream: BinaryIO, compact: bool, date: dt.date, crlf: bool, bom: bool
    ) -> None:
        self._stream = stream
        self._compact = compact
        self._newline = "\r\n" if crlf else "\n"
        self._buffer: list[str] = []
        self._size = 0
        self._first_content = True
        if bom:
            stream.write(UTF8_BOM)
        if compact:
            self._sep = self._newline
            header = list(COMPACT_HEADER)
        else:
            self._sep = self._newline * 2
            header = [*SPACED_HEADER, f"{date:%b} {date.day}"]
        self._buffer.append(self._sep.join(header))

    def line(self, text: str) -> None:
        if self._first_content and self._compact:
            text = GLUED_PREFIX + text
        self._first_content = False
        self._buffer.append(self._sep)
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= self.FLUSH_CHARS:
            self._flush()

    def _flush(self) -> None:
        self._stream.write("".join(self._buffer).encode("utf-8"))
        self._buffer.clear()
        self._size = 0

    def close(self) -> None:
        self._flush()  # no newline at end of file, like the real dumps


def open_output(path: Path, compression: str | None) -> BinaryIO:
    if compression == "gz":
        raw = open(path, "wb")  # noqa: SIM115 - closed through the GzipFile below
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        gz.myfileobj = raw  # GzipFile.close() then closes the raw file too
        return gz
    if compression == "bz2":
        return bz2.BZ2File(path, "wb", compresslevel=9)
    return open(path, "wb")  # noqa: SIM115 - returned to the caller, closed there


def file_compression(config: GeneratorConfig, k: int) -> str | None:
    if config.compress == "mixed":
        return (None, "gz", "bz2")[k % 3]
    return config.compress


def is_compact(config: GeneratorConfig, k: int) -> bool:
    """Error diffusion: the first k files hold floor(k * share) compact pages, interleaved."""
    share = config.compact_layout_share
    return math.floor((k + 1) * share + 1e-9) > math.floor(k * share + 1e-9)


def is_crlf_page(config: GeneratorConfig, k: int) -> bool:
    """A few pages (one in 12, at least one) get CRLF endings and a BOM when malformed > 0."""
    if config.malformed_rate <= 0:
        return False
    return k % 12 == min(5, config.files - 1)


def page_date(config: GeneratorConfig, k: int) -> dt.date:
    """One page per day: page ``k`` is dated ``k`` days after the start date."""
    return config.start_date + dt.timedelta(days=k)


def file_name(config: GeneratorConfig, k: int) -> str:
    date = page_date(config, k)
    suffix = {None: "", "gz": ".gz", "bz2": ".bz2"}[file_compression(config, k)]
    return f"digest_{date.isoformat()}.txt{suffix}"


# ============================================================================================
# Reading back (tests and benchmarks)
# ============================================================================================


def open_dump(path: str | Path) -> BinaryIO:
    """Open a dump for binary reading, decompressing by suffix."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - returned to the caller


_HEADERS = frozenset(h.casefold() for h in SPACED_HEADER + COMPACT_HEADER)
_DATE_LINE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}$")


def read_slots(path: str | Path) -> list[tuple[str, str | None]]:
    """Reference reader for *generated* dumps: record slots as (title, abstract or None).

    Deliberately simple (the pipeline has the real parser): headers, the date line and blank
    lines are skipped, a glued ``Subscribe`` is removed, and a line is an abstract iff it is at
    least 250 characters long (generated titles are <= 200, abstracts >= 300).
    """
    with open_dump(path) as handle:
        text = handle.read().decode("utf-8-sig")
    slots: list[tuple[str, str | None]] = []
    for line in _content_lines(text):
        if len(line) >= SHAPE_SPLIT_CHARS and slots and slots[-1][1] is None:
            slots[-1] = (slots[-1][0], line)
        else:
            slots.append((line, None))
    return slots


def _content_lines(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.casefold() in _HEADERS or _DATE_LINE.match(line):
            continue
        if line.startswith(GLUED_PREFIX) and line[len(GLUED_PREFIX) :][:1] not in ("", " "):
            line = line[len(GLUED_PREFIX) :]
        yield line
