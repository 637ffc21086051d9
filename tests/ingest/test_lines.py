"""transforms.ingest.lines: bytes -> bounded decoded lines -> records and file-level dead letters."""

from __future__ import annotations

import bz2
import gzip
import io
import random
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.ingest.lines import CHUNK_BYTES, LineReader, parse_stream
from transforms.ingest.parse import (
    BINARY_FILE,
    EMPTY_FILE,
    LINE_TOO_LONG,
    MISSING_ABSTRACT,
    NO_RECORDS,
    READ_ERROR,
    FileContext,
    TooLongLine,
    parse_lines,
)
from transforms.records import DeadLetter, Record

CTX = FileContext("dumps/page.txt", year=2024)
HEADER = b"Get trending papers in your email inbox once a day!\nGet trending papers in your email inbox!\n"
VOCAB = [
    "model",
    "data",
    "training",
    "sparse",
    "attention",
    "graph",
    "robust",
    "policy",
    "reward",
    "image",
    "video",
    "token",
    "latent",
    "diffusion",
    "benchmark",
    "retrieval",
    "memory",
    "agent",
    "planning",
    "language",
    "vision",
    "audio",
]


def page(n: int, seed: int = 0) -> tuple[bytes, list[tuple[str, str]]]:
    """A compact-layout page of ``n`` made-up papers, and its (title, abstract) pairs."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        title = f"Paper {i}: " + " ".join(rng.choice(VOCAB).title() for _ in range(6))
        words = [rng.choice(VOCAB) for _ in range(60)]
        abstract = f"Abstract {i} studies " + " ".join(words) + ". It works well."
        pairs.append((title, abstract))
    body = "\n".join(f"{t}\n{a}" for t, a in pairs)
    return HEADER + b"Subscribe" + body.encode() + b"\n", pairs


def run(data: bytes, ctx: FileContext = CTX) -> list[Record | DeadLetter]:
    return list(parse_stream(io.BytesIO(data), ctx))


def pairs_of(items) -> list[tuple[str, str]]:
    return [(r.title, r.abstract) for r in items if isinstance(r, Record)]


def reasons(items) -> list[str]:
    return [d.reason for d in items if isinstance(d, DeadLetter)]


def lines_of(data: bytes, **kwargs) -> tuple[LineReader, list[str]]:
    reader = LineReader(io.BytesIO(data), **kwargs)
    return reader, list(reader)


class GeneratedStream:
    """A read-only file over a generator of byte pieces: nothing but the pieces in flight."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buffer = b""
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        parts, have = [self._buffer], len(self._buffer)
        for piece in self._pieces:
            parts.append(piece)
            have += len(piece)
            if n >= 0 and have >= n:
                break
        data = b"".join(parts)
        out, self._buffer = (data, b"") if n < 0 else (data[:n], data[n:])
        self.size += len(out)
        return out


# --- decoding -----------------------------------------------------------------------------


def test_bom_is_stripped_so_glued_subscribe_still_parses() -> None:
    data, pairs = page(3)
    items = run(b"\xef\xbb\xbf" + data)
    assert pairs_of(items) == pairs
    assert reasons(items) == []
    _, lines = lines_of(b"\xef\xbb\xbfnew\nMar 13\n")
    assert lines == ["new", "Mar 13"]


def test_crlf_and_mixed_line_endings() -> None:
    data, pairs = page(4)
    assert pairs_of(run(data.replace(b"\n", b"\r\n"))) == pairs
    _, lines = lines_of(b"a\r\nb\nc\r\n\r\nd\r")
    assert lines == ["a", "b", "c", "d"]  # the blank line is dropped before decoding


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b"  \n", b"\t \r\n"])
def test_runs_of_blank_lines_never_reach_python_one_by_one(blank: bytes) -> None:
    # 64 MiB of newlines cost ~18 s of CPU when each blank line was a Python step; now the
    # reader drops them with bytes methods and hands over only the lines with text.
    data = b"Mar 13\n" + blank * 200_000 + b"A Title\n" + blank * 50_000 + b"An abstract. Two.\n"
    _, lines = lines_of(data, chunk_bytes=4096)
    assert [line for line in lines if line.strip()] == ["Mar 13", "A Title", "An abstract. Two."]
    assert len(lines) <= 3 + len(data) // 4096  # at most one blank line per chunk gets through


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="ab \t\r\n", max_size=12), max_size=30), st.integers(1, 16))
def test_dropping_blank_lines_keeps_every_other_line(pieces: list[str], chunk: int) -> None:
    data = "".join(pieces).encode()
    _, got = lines_of(data, chunk_bytes=chunk)
    expected = [line.rstrip(b"\r").decode() for line in data.split(b"\n")]
    assert [g for g in got if g.strip()] == [e for e in expected if e.strip()]


def test_cp1252_lines_decode_with_fallback_and_are_counted() -> None:
    data = "Caf\u00e9 na\u00efve \u201cquotes\u201d".encode("cp1252")
    reader, lines = lines_of(b"utf-8 line \xc3\xa9\n" + data + b"\nplain\n\x81\n")
    assert lines == [
        "utf-8 line \u00e9",
        "Caf\u00e9 na\u00efve \u201cquotes\u201d",
        "plain",
        "\ufffd",
    ]
    assert reader.fallback_lines == 2
    assert reader.error is None and not reader.binary


def test_cp1252_title_and_abstract_become_a_record() -> None:
    title = "Caf\u00e9 Scenes \u2013 a Na\u00efve Benchmark"
    abstract = "We present \u201ccaf\u00e9\u201d scenes. " * 12
    items = run((title + "\n" + abstract + "\n").encode("cp1252"))
    [record] = items
    assert record.title == title
    assert record.abstract == abstract.strip()


# --- file-level dead letters --------------------------------------------------------------


def test_binary_file_is_one_dead_letter() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10
    items = run(data)
    assert [(d.reason, d.record_index) for d in items] == [(BINARY_FILE, None)]
    assert items[0].excerpt.startswith("b'\\x89PNG")


def test_mostly_control_characters_is_binary() -> None:
    assert reasons(run(b"\x01\x02\x03\x04" * 100 + b"\nTitle\n")) == [BINARY_FILE]


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom-only"])
def test_empty_file(data: bytes) -> None:
    items = run(data)
    assert [(d.reason, d.record_index) for d in items] == [(EMPTY_FILE, None)]


@pytest.mark.parametrize(
    "data",
    [
        HEADER + b"Subscribe\nnew\n\nbyAK and the research community\nMar 13\n",
        b"\n\n  \r\n\t\n",
    ],
    ids=["headers-and-date", "blank-lines"],
)
def test_no_records(data: bytes) -> None:
    items = run(data)
    assert [(d.reason, d.record_index) for d in items] == [(NO_RECORDS, None)]


def test_a_file_with_only_a_dead_letter_is_not_also_no_records() -> None:
    assert reasons(run(b"Sparse Routing for Tiny Models\n")) == [MISSING_ABSTRACT]


# --- compressed files ---------------------------------------------------------------------


@pytest.mark.parametrize("opener", [gzip.open, bz2.open], ids=["gzip", "bz2"])
def test_compressed_files_parse_like_plain_ones(tmp_path: Path, opener) -> None:
    data, pairs = page(40)
    path = tmp_path / "dump.txt.z"
    with opener(path, "wb") as out:
        out.write(data)
    with opener(path, "rb") as stream:
        items = list(parse_stream(stream, CTX))
    assert pairs_of(items) == pairs
    assert reasons(items) == []


def _truncated(tmp_path: Path, data: bytes, cut: int | None = None, level: int = 9) -> Path:
    compressed = gzip.compress(data, compresslevel=level, mtime=0)
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(compressed[: len(compressed) // 2 if cut is None else cut])
    return path


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path: Path) -> None:
    data, pairs = page(400, seed=1)
    with gzip.open(_truncated(tmp_path, data), "rb") as stream:
        items = list(parse_stream(stream, CTX))
    *before, last = items
    assert last.reason == READ_ERROR and last.record_index is None
    assert "EOFError" in last.excerpt
    got = pairs_of(before)
    assert 0 < len(got) < len(pairs)
    assert got == pairs[: len(got)]  # a clean prefix: nothing shifted, nothing invented
    # at most the title whose abstract was cut is dead-lettered, in its own slot
    tail = [d for d in before if isinstance(d, DeadLetter)]
    assert [(d.reason, d.record_index, d.excerpt) for d in tail] in (
        [],
        [(MISSING_ABSTRACT, len(got), pairs[len(got)][0])],
    )


@pytest.mark.parametrize(
    ("where", "dead"),
    [("mid-abstract", True), ("after-title", True), ("mid-title", False), ("mid-header", False)],
)
def test_truncated_gzip_cut_at_a_known_place(tmp_path: Path, where: str, dead: bool) -> None:
    data, pairs = page(8)
    title3, abstract3 = pairs[3]
    offsets = {
        "mid-abstract": data.index(abstract3.encode()) + 40,
        "after-title": data.index(abstract3.encode()),
        "mid-title": data.index(title3.encode()) + 5,
        "mid-header": 20,
    }
    # Stored (level 0) deflate keeps the text as is after the gzip header and one block header.
    compressed = gzip.compress(data, compresslevel=0, mtime=0)
    start = compressed.index(data[:64])
    path = _truncated(tmp_path, data, cut=start + offsets[where], level=0)
    with gzip.open(path, "rb") as stream:
        items = list(parse_stream(stream, CTX))
    kept = 0 if where == "mid-header" else 3
    assert pairs_of(items) == pairs[:kept]
    expected_dead = [MISSING_ABSTRACT, READ_ERROR] if dead else [READ_ERROR]
    assert reasons(items) == expected_dead
    if dead:  # the pending title at the cut is dead-lettered, not lost, and not paired
        assert (items[-2].record_index, items[-2].excerpt) == (3, title3)
    if where == "mid-abstract":
        assert "unterminated last line dropped" in items[-1].excerpt


def test_truncated_bz2_ends_in_a_read_error(tmp_path: Path) -> None:
    data, pairs = page(200, seed=2)
    compressed = bz2.compress(data)
    path = tmp_path / "cut.txt.bz2"
    path.write_bytes(compressed[: len(compressed) // 2])
    with bz2.open(path, "rb") as stream:
        items = list(parse_stream(stream, CTX))
    assert items[-1].reason == READ_ERROR
    got = pairs_of(items)
    assert got == pairs[: len(got)]


def test_read_error_from_any_stream_keeps_earlier_lines() -> None:
    data, pairs = page(3)

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self._left = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._left.read(len(buffer))
            if not chunk:
                raise OSError("disk on fire")
            buffer[: len(chunk)] = chunk
            return len(chunk)

    items = list(parse_stream(Failing(), CTX))
    assert pairs_of(items) == pairs
    assert [(d.reason, d.excerpt) for d in items if isinstance(d, DeadLetter)] == [
        (READ_ERROR, "OSError: disk on fire")
    ]


# --- long lines and chunking --------------------------------------------------------------


def test_line_longer_than_limit_is_dead_lettered_and_later_lines_parse() -> None:
    title, abstract = "Tiny Chunks for Huge Lines", "We read lines in pieces. It works."
    data = "\n".join(
        ["Mar 13", title, "x" * 500, "Sparse Title", abstract, "y" * 70, "Last One", abstract]
    )
    reader = LineReader(io.BytesIO(data.encode()), chunk_bytes=16, max_line_bytes=64)
    items = list(parse_lines(reader, CTX))
    summary = [
        (type(i).__name__, i.record_index, getattr(i, "reason", None) or i.title) for i in items
    ]
    assert summary == [
        ("DeadLetter", 0, LINE_TOO_LONG),  # the title's slot: its abstract cannot be kept
        ("Record", 1, "Sparse Title"),
        ("DeadLetter", 2, LINE_TOO_LONG),  # 70 bytes: over 64, ends inside the next chunk
        ("Record", 3, "Last One"),
    ]
    # the title before the long line is not lost; then the prefix read at the limit
    head, excerpt = items[0].excerpt.split("\n")
    assert head == title and excerpt.startswith("x" * 65) and set(excerpt) == {"x"}
    assert items[2].excerpt.startswith("y" * 65)


def test_too_long_marker_and_limit_boundaries() -> None:
    _, lines = lines_of(
        b"a" * 64 + b"\n" + b"b" * 65 + b"\nc\n" + b"d" * 300, chunk_bytes=16, max_line_bytes=64
    )
    assert lines[0] == "a" * 64 and not isinstance(lines[0], TooLongLine)
    assert isinstance(lines[1], TooLongLine) and lines[1] == "b" * 65
    assert lines[2] == "c"
    assert isinstance(lines[3], TooLongLine) and 65 <= len(lines[3]) <= 200
    assert set(lines[3]) == {"d"}
    assert len(lines) == 4


_TEXT = st.text(alphabet="ab \u00e9\u20ac\t\r", max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_TEXT, max_size=12),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
    st.integers(1, 24),
)
def test_chunking_never_changes_the_lines(lines, newline, final_newline, chunk) -> None:
    data = newline.join(s.encode() for s in lines) + (newline if final_newline and lines else b"")
    reader, got = lines_of(data, chunk_bytes=chunk)
    expected = [line.rstrip(b"\r").decode() for line in data.split(b"\n")]
    assert [g for g in got if g.strip()] == [
        e for e in expected if e.strip()
    ]  # blanks: maybe dropped
    assert reader.bytes_read == len(data)
    assert reader.fallback_lines == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text(alphabet="xy\r", max_size=90), max_size=10),
    st.integers(1, 40),
    st.integers(1, 60),
)
def test_too_long_lines_are_exactly_those_over_the_limit(lines, chunk, limit) -> None:
    data = b"\n".join(s.encode() for s in lines)
    _, got = lines_of(data, chunk_bytes=chunk, max_line_bytes=limit)
    # a line's length leaves out its final CRs; blank lines may be dropped
    expected = [line for line in data.split(b"\n") if line.rstrip(b"\r")]
    got = [out for out in got if out]
    assert len(got) == len(expected)
    for line, out in zip(expected, got, strict=True):
        if len(line.rstrip(b"\r")) > limit:
            assert isinstance(out, TooLongLine)
            assert line.decode().startswith(out) and len(out) >= min(200, limit + 1)
        else:
            assert not isinstance(out, TooLongLine)
            assert out == line.rstrip(b"\r").decode()


# --- bounded memory -----------------------------------------------------------------------


def _big_stream(total: int) -> Iterator[bytes]:
    """~``total`` bytes: records with long abstracts, and now and then a 2 MB junk line."""
    word = b"sparse" * 400
    made, i = 0, 0
    while made < total:
        if i % 20 == 19:
            for _ in range(32):
                yield b"junk " * 13_107
            yield b"\n"
            made += 32 * 65_535 + 1
        else:
            record = b"Paper %d on sparse routing\n" % i
            record += b" ".join([word] * 26) + b" %d. Done.\n\n" % i
            yield record
            made += len(record)
        i += 1


def test_memory_stays_bounded_on_a_50_mb_stream() -> None:
    stream = GeneratedStream(_big_stream(50 << 20))
    tracemalloc.start()
    try:
        counts: Counter[str] = Counter()
        for item in parse_stream(stream, FileContext("gen.txt")):
            counts[item.reason if isinstance(item, DeadLetter) else "record"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.size >= 50 << 20
    assert counts == {"record": 304, LINE_TOO_LONG: 16}
    assert peak < 8 * CHUNK_BYTES < stream.size / 6, f"peak {peak / 1e6:.1f} MB"
