"""transforms.ingest.parse: line shapes, pairing, dead letters, dates, file context (pure, no Beam)."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.ingest.lines import parse_stream
from transforms.ingest.parse import (
    BAD_DATE_LINE,
    EMPTY_AFTER_CLEANING,
    HEADER_LINES,
    LINE_TOO_LONG,
    MISSING_ABSTRACT,
    ORPHAN_ABSTRACT,
    FileContext,
    Shape,
    TooLongLine,
    file_context,
    is_doubtful_title,
    is_long,
    line_shape,
    parse_date_line,
    parse_lines,
)
from transforms.records import EXCERPT_CHARS, DeadLetter, Record, make_record_id
from transforms.text import clean_text

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
SRC = "dumps/page.txt"
CTX = FileContext(SRC, year=2024)

SPACED_HEADER = [
    "new",
    "",
    "Get trending papers in your email inbox!",
    "",
    "Subscribe",
    "",
    "byAK and the research community",
    "",
]
COMPACT_HEADER = [
    "Get trending papers in your email inbox once a day!",
    "Get trending papers in your email inbox!",
]


def abstract(subject: str) -> str:
    """A made-up abstract (two sentences, > 250 chars): always Shape.ABSTRACT."""
    return (
        f"We study {subject} in a setting where labelled data is scarce and compute is limited. "
        f"Our approach to {subject} combines a lightweight encoder with a calibrated decoder, "
        "and it improves accuracy on four public benchmarks while using a fraction of the "
        "parameters of strong baselines."
    )


T1, T2, T3, T4 = (
    "Sparse Routing for Tiny Language Models",
    "Revisiting Contrastive vs. Generative Pretraining: Theory and Practice",
    "Learning to Segment Anything from Few Clicks",
    "Diffusion Policies for Dexterous Manipulation",
)
A1, A2, A3, A4 = (abstract(s) for s in ("sparse routing", "pretraining", "segmentation", "robots"))
SHORT_ABSTRACT = "A compact method for counting objects in crowded scenes."
SUBSCRIBER_TITLE = "Subscriber Churn Forecasting with Temporal Transformers"
# Two sentence breaks make it abstract-shaped, yet it is a title: the pair decides.
TWO_QUESTIONS = "Is Attention Enough? Do Transformers Dream?"


def summarize(items) -> list[tuple]:
    out = []
    for item in items:
        if isinstance(item, Record):
            out.append(("rec", item.record_index, item.title, item.abstract, item.digest_date))
        else:
            out.append(("dead", item.record_index, item.reason, item.excerpt))
    return out


def rec(index: int, title: str, abstract_: str, date: dt.date | None = None) -> tuple:
    return ("rec", index, title, abstract_, date)


def dead(index: int | None, reason: str, excerpt: str) -> tuple:
    return ("dead", index, reason, excerpt)


MAR13 = dt.date(2024, 3, 13)
DEFAULT = dt.date(2023, 7, 1)


def spaced(*lines: str, date_line: str = "Mar 13") -> str:
    body = [*SPACED_HEADER, date_line, ""]
    for line in lines:
        body += [line, ""]
    return "\n".join(body)


def compact(first_title: str, *lines: str) -> str:
    return "\n".join([*COMPACT_HEADER, "Subscribe" + first_title, *lines])


PAGES = [
    pytest.param(
        spaced(T1, A1, T2, A2),
        CTX,
        [rec(0, T1, A1, MAR13), rec(1, T2, A2, MAR13)],
        id="spaced-layout",
    ),
    pytest.param(
        compact(T1, A1, T2, A2),
        FileContext(SRC, year=2024, default_date=DEFAULT),
        [rec(0, T1, A1, DEFAULT), rec(1, T2, A2, DEFAULT)],
        id="compact-layout-glued-subscribe",
    ),
    pytest.param(
        "\n".join([SUBSCRIBER_TITLE, A1, "Subscribe" + SUBSCRIBER_TITLE, A2]),
        CTX,
        [rec(0, SUBSCRIBER_TITLE, A1), rec(1, SUBSCRIBER_TITLE, A2)],
        id="title-starting-with-subscriber-is-not-cut",
    ),
    pytest.param(
        spaced(T1, A1, T2, A2).replace("\n", "\r\n"),
        CTX,
        [rec(0, T1, A1, MAR13), rec(1, T2, A2, MAR13)],
        id="crlf",
    ),
    pytest.param(
        "\n".join(["new  ", " Mar 13\t", "", f"  {T1} \t", f"{A1}   ", f"\t{T2}", f"{A2} \r"]),
        CTX,
        [rec(0, T1, A1, MAR13), rec(1, T2, A2, MAR13)],
        id="surrounding-whitespace",
    ),
    pytest.param(
        spaced(T1, A1, T2, T3, A3, T4, A4),
        CTX,
        [
            rec(0, T1, A1, MAR13),
            dead(1, MISSING_ABSTRACT, T2),
            rec(2, T3, A3, MAR13),
            rec(3, T4, A4, MAR13),
        ],
        id="missing-abstract-in-the-middle",
    ),
    pytest.param(
        compact(T1, A1, T2, T3, T4, A4),
        CTX,
        [
            rec(0, T1, A1),
            dead(1, MISSING_ABSTRACT, T2),
            dead(2, MISSING_ABSTRACT, T3),
            rec(3, T4, A4),
        ],
        id="two-missing-abstracts-in-a-row",
    ),
    pytest.param(
        spaced(T1, A1, T2),
        CTX,
        [rec(0, T1, A1, MAR13), dead(1, MISSING_ABSTRACT, T2)],
        id="missing-abstract-at-eof",
    ),
    pytest.param(
        spaced(A1, T2, A2, T3, A3),
        CTX,
        [
            dead(0, ORPHAN_ABSTRACT, A1[:EXCERPT_CHARS]),
            rec(1, T2, A2, MAR13),
            rec(2, T3, A3, MAR13),
        ],
        id="orphan-abstract-at-start",
    ),
    pytest.param(
        spaced(T1, A1, A2, T3, A3),
        CTX,
        [
            rec(0, T1, A1, MAR13),
            dead(1, ORPHAN_ABSTRACT, A2[:EXCERPT_CHARS]),
            rec(2, T3, A3, MAR13),
        ],
        id="orphan-abstract-after-a-record",
    ),
    pytest.param(
        spaced(T1, SHORT_ABSTRACT, T2, A2),
        CTX,
        [rec(0, T1, SHORT_ABSTRACT, MAR13), rec(1, T2, A2, MAR13)],
        id="short-abstract-ending-in-period-pairs-as-abstract",
    ),
    pytest.param(
        "\n".join(["Mar 13", T1, A1, "March 3, 2025", T2, A2, "Sept. 9", T3, A3]),
        FileContext(SRC, year=2024),
        [
            rec(0, T1, A1, MAR13),
            rec(1, T2, A2, dt.date(2025, 3, 3)),
            rec(2, T3, A3, dt.date(2024, 9, 9)),
        ],
        id="date-lines-with-and-without-year",
    ),
    pytest.param(
        "\n".join(["Mar 13", T1, A1, "Feb 30", T2, A2]),
        FileContext(SRC, year=2024),
        [rec(0, T1, A1, MAR13), dead(None, BAD_DATE_LINE, "Feb 30"), rec(1, T2, A2, MAR13)],
        id="impossible-date-is-dead-lettered-and-keeps-previous-date",
    ),
    pytest.param(
        "\n".join(["Feb 30", T1, A1]),
        FileContext(SRC, year=None),
        [dead(None, BAD_DATE_LINE, "Feb 30"), rec(0, T1, A1)],
        id="impossible-date-without-year",
    ),
    pytest.param(
        "\n".join(["Feb 29", T1, A1]),
        FileContext(SRC, year=2023),
        [dead(None, BAD_DATE_LINE, "Feb 29"), rec(0, T1, A1)],
        id="feb-29-in-a-common-year",
    ),
    pytest.param(
        spaced(T1, A1),
        FileContext(SRC, year=None, default_date=DEFAULT),
        [rec(0, T1, A1, None)],
        id="date-line-without-any-year-gives-none",
    ),
    pytest.param(
        "\n".join([T1, A1, "Mar 13", T2, A2]),
        FileContext(SRC, year=2024, default_date=DEFAULT),
        [rec(0, T1, A1, DEFAULT), rec(1, T2, A2, MAR13)],
        id="default-date-until-a-date-line",
    ),
    pytest.param(
        "\n".join(["Mayhem 12", A1, "Decoder 2", A2]),
        CTX,
        [rec(0, "Mayhem 12", A1), rec(1, "Decoder 2", A2)],
        id="titles-that-start-like-a-month-are-titles",
    ),
    pytest.param(
        "\n".join(
            [
                "Diffusion &amp;amp; Flows: ﬁne-tuning on ＧＰＵs\u200b",
                "We &lt;really&gt; mean it\u00a0 twice. " + A1 + "&#8203;",
            ]
        ),
        CTX,
        [rec(0, "Diffusion & Flows: fine-tuning on GPUs", "We <really> mean it twice. " + A1)],
        id="entities-nfkc-invisible-chars-cleaned",
    ),
    pytest.param(
        "\n".join(["\u200b\u200b", A1, T2, A2]),
        CTX,
        [dead(0, EMPTY_AFTER_CLEANING, "\u200b\u200b\n" + A1[: EXCERPT_CHARS - 3]), rec(1, T2, A2)],
        id="title-empty-after-cleaning",
    ),
    pytest.param(
        "\n".join([TWO_QUESTIONS, A1, T2, A2]),
        CTX,
        [rec(0, TWO_QUESTIONS, A1), rec(1, T2, A2)],
        id="two-sentence-title-before-a-long-abstract-is-a-title",
    ),
    pytest.param(
        "\n".join([T1, TWO_QUESTIONS, A1]),
        CTX,
        [dead(0, MISSING_ABSTRACT, T1), rec(1, TWO_QUESTIONS, A1)],
        id="two-sentence-title-after-a-title-is-a-title-when-a-long-abstract-follows",
    ),
    pytest.param(
        "\n".join([T1, TWO_QUESTIONS, T2, A2]),
        CTX,
        [rec(0, T1, TWO_QUESTIONS), rec(1, T2, A2)],
        id="two-sentence-line-without-long-abstract-after-it-stays-an-abstract",
    ),
    pytest.param(
        "\n".join([TWO_QUESTIONS, SHORT_ABSTRACT]),
        CTX,
        [dead(0, ORPHAN_ABSTRACT, TWO_QUESTIONS), dead(1, MISSING_ABSTRACT, SHORT_ABSTRACT)],
        id="two-sentence-line-before-a-short-line-is-an-orphan-abstract",
    ),
    pytest.param(
        "\n".join([TWO_QUESTIONS, "Mar 14", A1]),
        CTX,
        [dead(0, ORPHAN_ABSTRACT, TWO_QUESTIONS), dead(1, ORPHAN_ABSTRACT, A1[:EXCERPT_CHARS])],
        id="a-date-line-between-settles-the-two-sentence-line-as-an-abstract",
    ),
    pytest.param(
        "\n".join([TWO_QUESTIONS, A1, "One sentence. Another one.", A2]),
        CTX,
        [
            rec(0, TWO_QUESTIONS, A1),
            dead(1, ORPHAN_ABSTRACT, "One sentence. Another one."),
            dead(2, ORPHAN_ABSTRACT, A2[:EXCERPT_CHARS]),
        ],
        id="a-final-period-is-never-a-title",
    ),
    pytest.param(
        "\n".join([*COMPACT_HEADER, "Subscribe", "new", "NEW", "  subscribe  "]),
        CTX,
        [],
        id="only-headers",
    ),
]


@pytest.mark.parametrize(("text", "ctx", "expected"), PAGES)
def test_parse_lines_pages(text: str, ctx: FileContext, expected: list[tuple]) -> None:
    assert summarize(parse_lines(text.split("\n"), ctx)) == expected


def test_records_carry_ids_hash_and_code_urls() -> None:
    abs_with_code = (
        A1 + " Code: https://github.com/acme/tiny-router. Demo at (https://acme.ai/demo)."
    )
    [record] = parse_lines([T1, abs_with_code], CTX)
    assert record.source_file == SRC
    assert record.record_id == make_record_id(SRC, 0)
    assert record.code_urls == ("https://github.com/acme/tiny-router", "https://acme.ai/demo")
    assert re.fullmatch(r"[0-9a-f]{32}", record.content_hash)


def test_record_ids_are_stable_and_unique() -> None:
    lines = spaced(T1, A1, T2, T3, A3, T4, A4, A1, T1, A1).split("\n")
    first = list(parse_lines(lines, CTX))
    again = list(parse_lines(lines, CTX))
    assert first == again  # frozen dataclasses: equal by value, ids included
    records = [r for r in first if isinstance(r, Record)]
    assert len(records) == 4
    ids = [r.record_id for r in records]
    assert len(set(ids)) == len(ids)
    assert all(r.record_id == make_record_id(SRC, r.record_index) for r in records)
    # same text at another place (or in another file) is another record: another id
    assert records[0].content_hash == records[-1].content_hash
    assert records[0].record_id != records[-1].record_id
    elsewhere = list(parse_lines(lines, FileContext("dumps/other.txt", year=2024)))
    assert not set(ids) & {r.record_id for r in elsewhere if isinstance(r, Record)}


def test_too_long_line_takes_the_slot_of_its_title() -> None:
    # Over the reader's limit a line is an abstract by its length: with the title before it,
    # it is one slot (one dead letter holding the title); alone, a slot of its own.
    items = list(parse_lines([T1, TooLongLine("x" * 50), T2, A2, TooLongLine("y" * 50)], CTX))
    assert summarize(items) == [
        dead(0, LINE_TOO_LONG, f"{T1}\n" + "x" * 50),
        rec(1, T2, A2),
        dead(2, LINE_TOO_LONG, "y" * 50),
    ]


# --- dates and file context -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "year", "expected"),
    [
        ("Mar 13", 2024, dt.date(2024, 3, 13)),
        ("mar 13", 2024, dt.date(2024, 3, 13)),
        ("March 3, 2024", None, dt.date(2024, 3, 3)),
        ("March 3 2021", 2024, dt.date(2021, 3, 3)),
        ("Sept. 9", 2022, dt.date(2022, 9, 9)),
        ("Dec 31", None, None),
        ("Feb 29", 2024, dt.date(2024, 2, 29)),
        ("Feb 29", None, None),
        ("Mar 13", None, None),
        ("Mayhem 12", 2024, False),
        ("Marching 3", 2024, False),
        ("Mar 13 is a date", 2024, False),
        ("13 Mar", 2024, False),
        ("Mar", 2024, False),
        ("Mar 123", 2024, False),
    ],
)
def test_parse_date_line(line: str, year: int | None, expected) -> None:
    assert parse_date_line(line, year) == expected


@pytest.mark.parametrize(
    ("line", "year"),
    [("Feb 30", 2024), ("Feb 30", None), ("Apr 31", None), ("Feb 29", 2023), ("Jan 0", 2024)],
)
def test_parse_date_line_refuses_impossible_days(line: str, year: int | None) -> None:
    with pytest.raises(ValueError):
        parse_date_line(line, year)


@pytest.mark.parametrize(
    ("path", "modified", "option", "year", "default_date"),
    [
        ("/d/digest_2023-05-02.txt", 2025, 2020, 2020, dt.date(2023, 5, 2)),
        ("/d/digest_2023-05-02.txt", 2025, None, 2023, dt.date(2023, 5, 2)),
        ("/d/2019/digest_2023-05-02.txt.gz", 2025, None, 2023, dt.date(2023, 5, 2)),
        ("/d/2021/page.txt", 2025, None, 2021, None),
        ("gs://bucket/2022/03/page.txt.bz2", None, None, 2022, None),
        ("/d/dump_2018.txt", 2025, None, 2018, None),
        ("/d/page.txt", 2025, None, 2025, None),
        ("/d/page.txt", None, None, None, None),
        ("/d/page.txt", None, 2019, 2019, None),
        ("/d/2021/digest_2023-02-30.txt", 2025, None, 2021, None),
        ("/d/digest_2023-02-30.txt", 2025, None, 2023, None),
        ("/d/003_ab2019fe77c1d2e0.txt", 2025, None, 2025, None),
        ("/d/x12023.txt", 2025, None, 2025, None),
    ],
)
def test_file_context_rule(path, modified, option, year, default_date) -> None:
    assert file_context(path, modified, option) == FileContext(path, year, default_date)


# --- line shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shape"),
    [
        (T1, Shape.TITLE),
        (T2, Shape.TITLE),  # one sentence break ("vs. ") is still a title
        ("Is Attention All You Need?", Shape.TITLE),
        ("GPT-4 Technical Report", Shape.TITLE),
        (" ".join(["word"] * 35), Shape.TITLE),
        (" ".join(["word"] * 36), Shape.EITHER),
        (" ".join(["word"] * 39), Shape.EITHER),
        (" ".join(["w"] * 40), Shape.ABSTRACT),
        (SHORT_ABSTRACT, Shape.EITHER),
        ("Attention Is All You Need.", Shape.EITHER),
        ("One sentence. Another one", Shape.TITLE),
        ("One sentence. Another one.", Shape.ABSTRACT),
        ("Why? Because! It works.", Shape.ABSTRACT),
        ("x" * 249, Shape.TITLE),
        ("x" * 250, Shape.ABSTRACT),
        (A1, Shape.ABSTRACT),
        ("Version 2.0 of a 3.5B model", Shape.TITLE),  # decimal points are no sentence ends
    ],
)
def test_line_shape(line: str, shape: Shape) -> None:
    assert line_shape(line) is shape


@pytest.mark.parametrize(
    ("line", "doubtful"),
    [
        (TWO_QUESTIONS, True),
        ("Stop! Look! Listen to Your Gradients", True),
        ("Why? Because! It works.", False),  # a final period: never a title
        ("One sentence. Another one", False),  # one sentence break: a plain title
        (T1, False),
        (A1, False),  # long: an abstract whatever else
        (" ".join(["Why?"] * 36), False),  # more words than any title
    ],
)
def test_is_doubtful_title(line: str, doubtful: bool) -> None:
    assert is_doubtful_title(line) is doubtful
    assert not (doubtful and is_long(line))


# --- real dumps ---------------------------------------------------------------------------


def test_real_seed_dumps() -> None:
    files = sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []
    if not files:
        pytest.skip(f"real seed dumps not found at {SEEDS}")
    assert len(files) == 5
    items = []
    for path in files:
        modified = dt.datetime.fromtimestamp(os.stat(path).st_mtime, tz=dt.UTC).year
        with path.open("rb") as stream:
            items += list(parse_stream(stream, file_context(str(path), modified)))
    records = [r for r in items if isinstance(r, Record)]
    dead_letters = [d for d in items if isinstance(d, DeadLetter)]
    assert dead_letters == []
    assert len(records) == 823
    assert len({r.title for r in records}) == 723
    assert len({r.record_id for r in records}) == 823
    for path in files:  # record_index runs 0..k-1 in every file
        indexes = [r.record_index for r in records if r.source_file == str(path)]
        assert indexes == list(range(len(indexes)))
    assert all(r.title and len(r.abstract) > len(r.title) for r in records)


# --- properties ---------------------------------------------------------------------------

_GLUED = re.compile(r"^Subscribe(?=[^a-z\s])")

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGH0123456789-:", min_size=1, max_size=9)
_TITLE = st.lists(_WORD, min_size=1, max_size=14).map(" ".join)
_ABSTRACT = st.lists(_WORD, min_size=40, max_size=80).map(lambda ws: " ".join(ws) + ". Done.")
_TWO_SENTENCE_TITLE = st.tuples(
    _TITLE, st.sampled_from("?!."), _TITLE, st.sampled_from(["?", "!", ""])
).map(lambda t: f"{t[0]}{t[1]} {t[2]}{t[3]}")
_HEADER = st.tuples(
    st.sampled_from(sorted(HEADER_LINES)),
    st.booleans(),
    st.sampled_from(["", " ", "\t", "  \r"]),
).map(lambda t: (t[0].upper() if t[1] else t[0].title()) + t[2])
_DATE = st.sampled_from(
    ["Mar 13", "March 3, 2024", "sept. 9", "Feb 30", "Apr 31", "Feb 29", "Jan 0", "dec 31 2020"]
)
_NOISE = st.sampled_from(
    [
        "",
        "   ",
        "\t\r",
        "\u200b",
        "&amp;nbsp;",
        "\u00a0",
        "Subscribe",
        "SubscribeMar 13",
        "Subscribe ",
        "A short abstract that ends in a period.",
        "Mayhem 12",
    ]
)
LINE = st.one_of(
    st.text(max_size=60),
    st.text(min_size=200, max_size=400),
    _TITLE,
    _TITLE.map(lambda t: "Subscribe" + t),
    _ABSTRACT,
    _HEADER,
    _DATE,
    _NOISE,
)
# Whole pairs make records (and empty-after-cleaning pairs) common, single lines add the mess.
BLOCK = st.one_of(
    st.tuples(_TITLE, _ABSTRACT),
    st.tuples(_TWO_SENTENCE_TITLE, _ABSTRACT),
    st.tuples(_TWO_SENTENCE_TITLE, _TITLE),
    st.tuples(_TITLE, st.sampled_from(["A short abstract that ends in a period."])),
    st.tuples(st.sampled_from(["\u200b", "&amp;nbsp;", "\u00ad\u2060"]), _ABSTRACT),
    LINE.map(lambda line: (line,)),
)
PAGE = st.lists(BLOCK, max_size=20).map(lambda blocks: [line for b in blocks for line in b])
CONTEXT = st.builds(
    FileContext,
    st.just(SRC),
    st.sampled_from([None, 2023, 2024]),
    st.sampled_from([None, DEFAULT]),
)


def _classify(raw: str, year: int | None) -> tuple[str, str | None]:
    """What the documented rules make of one raw line: skip, content or bad date."""
    line = raw.strip()
    if not line or line.casefold() in HEADER_LINES:
        return "skip", None
    line = _GLUED.sub("", line)
    try:
        date = parse_date_line(line, year)
    except ValueError:
        return "bad_date", line
    return ("content", line) if date is False else ("skip", None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAGE, CONTEXT)
def test_every_content_line_lands_in_exactly_one_output(lines: list[str], ctx) -> None:
    items = list(parse_lines(lines, ctx))  # never raises

    classified = [_classify(raw, ctx.year) for raw in lines]
    content = [line for kind, line in classified if kind == "content"]
    bad_dates = [line for kind, line in classified if kind == "bad_date"]

    reasons = Counter(d.reason for d in items if isinstance(d, DeadLetter))
    n_records = sum(isinstance(i, Record) for i in items)
    assert set(reasons) <= {MISSING_ABSTRACT, ORPHAN_ABSTRACT, EMPTY_AFTER_CLEANING, BAD_DATE_LINE}
    # exact count: a pair uses two lines, a lone title or abstract one, a bad date line one
    assert len(content) == (
        2 * (n_records + reasons[EMPTY_AFTER_CLEANING])
        + reasons[MISSING_ABSTRACT]
        + reasons[ORPHAN_ABSTRACT]
    )
    assert len(bad_dates) == reasons[BAD_DATE_LINE]

    # exact reconstruction: walking the outputs consumes the content lines in file order
    pos, bad_pos = 0, 0
    for item in items:
        if isinstance(item, Record):
            title, abstract_ = content[pos], content[pos + 1]
            assert item.title == clean_text(title)
            assert item.abstract == clean_text(abstract_)
            # a title by its shape, or a doubtful one decided by the long abstract after it
            assert line_shape(title) is not Shape.ABSTRACT or (
                is_doubtful_title(title) and is_long(abstract_)
            )
            assert line_shape(abstract_) is not Shape.TITLE
            pos += 2
        elif item.reason == EMPTY_AFTER_CLEANING:
            title, abstract_ = content[pos], content[pos + 1]
            assert item.excerpt == f"{title}\n{abstract_}"[:EXCERPT_CHARS]
            assert not clean_text(title) or not clean_text(abstract_)
            pos += 2
        elif item.reason == BAD_DATE_LINE:
            assert item.excerpt == bad_dates[bad_pos][:EXCERPT_CHARS]
            bad_pos += 1
        else:
            line = content[pos]
            assert item.excerpt == line[:EXCERPT_CHARS]
            if item.reason == ORPHAN_ABSTRACT:
                assert line_shape(line) is Shape.ABSTRACT
            else:  # a lone title: the next content line (if any) is a title
                nxt = content[pos + 1 : pos + 3]
                assert (
                    not nxt
                    or line_shape(nxt[0]) is Shape.TITLE
                    or (is_doubtful_title(nxt[0]) and len(nxt) == 2 and is_long(nxt[1]))
                )
            pos += 1
    assert pos == len(content)
    assert bad_pos == len(bad_dates)


@settings(max_examples=50, deadline=None)
@given(PAGE, CONTEXT)
def test_record_index_counts_every_slot(lines: list[str], ctx) -> None:
    items = list(parse_lines(lines, ctx))
    slots = [i.record_index for i in items if i.record_index is not None]
    assert slots == list(range(len(slots)))
    assert all(
        isinstance(i, DeadLetter) and i.reason == BAD_DATE_LINE
        for i in items
        if i.record_index is None
    )
    for item in items:
        if isinstance(item, Record):
            assert item.record_id == make_record_id(SRC, item.record_index)
            assert item.title and item.abstract
