"""Bytes of one (possibly huge) file -> decoded lines, in bounded memory.

Kept apart from the parser so the parser only ever sees text, and so read failures
(a truncated gzip, an I/O error) end the line stream cleanly instead of unwinding through
the parser: records parsed before the failure are kept, the failure becomes a dead letter.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from transforms.ingest.parse import (
    BINARY_FILE,
    EMPTY_FILE,
    NO_RECORDS,
    READ_ERROR,
    FileContext,
    TooLongLine,
    parse_lines,
)
from transforms.records import DeadLetter, Record

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20
SNIFF_BYTES = 8192
UTF8_BOM = b"\xef\xbb\xbf"
# Scraped pages that are not UTF-8 are nearly always Windows-1252; it decodes every byte.
FALLBACK_ENCODING = "cp1252"
# A line of blanks only, after the line break before it (the parser skips such lines anyway).
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]+(?=\n)")


# Python's own decompressors, not Beam's CompressedFile: they raise on a truncated stream
# (Beam's ends it silently), which is what turns a broken archive into a dead letter.
DECOMPRESSORS = {  # noqa: SIM115 - the caller closes the stream
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),  # noqa: SIM115
}


def decompressed(raw: BinaryIO, path: str) -> BinaryIO:
    """``raw`` seen through the decompressor its file extension names (else as is)."""
    for suffix, opener in DECOMPRESSORS.items():
        if path.lower().endswith(suffix):
            return opener(raw)
    return raw


def without_blank_lines(buffer: bytes) -> bytes:
    """``buffer`` with its blank lines dropped and CRLF made LF, in C (bytes methods, one
    regex only when a blank line holds spaces): one Python step per line would make a gzip
    of newlines cost seconds of CPU per 64 MiB. Lines keep their bytes but a final CR, which
    the reader strips anyway; the first line of ``buffer`` (maybe the end of a line cut at a
    chunk boundary) and the last (not yet terminated) are never dropped.
    """
    buffer = buffer.replace(b"\r\n", b"\n")
    if b"\n " in buffer or b"\n\t" in buffer or b"\n\r" in buffer or b"\n\f" in buffer:
        buffer = _BLANK_LINE.sub(b"\n", buffer)
    while b"\n\n" in buffer:  # each pass halves a run of empty lines
        buffer = buffer.replace(b"\n\n", b"\n")
    return buffer


def looks_binary(head: bytes) -> bool:
    """NUL bytes or mostly control characters in the first bytes: not a text dump."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls / len(head) > 0.1


class LineReader:
    """Iterate a binary stream as decoded lines, remembering what went wrong.

    Blank lines are mostly dropped before they are split out (:func:`without_blank_lines`);
    a few may still come through, and the parser skips them like any blank line.

    After iteration: ``error`` is the read failure that ended the stream early (or None),
    ``binary`` tells that the file was refused after sniffing its first bytes,
    ``bytes_read`` and ``fallback_lines`` (lines that were not UTF-8) describe the file.
    ``fallback_counter`` (a Beam counter, optional) is incremented for each fallback line.
    """

    def __init__(
        self,
        stream: BinaryIO,
        chunk_bytes: int = CHUNK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        fallback_counter: Any = None,
    ) -> None:
        self._stream = stream
        self._fallback_counter = fallback_counter
        self._chunk_bytes = chunk_bytes
        self._max_line_bytes = max_line_bytes
        self.head = b""
        self.bytes_read = 0
        self.fallback_lines = 0
        self.error: str | None = None
        self.binary = False

    def __iter__(self) -> Iterator[str]:
        for raw in self._raw_lines():
            if isinstance(raw, TooLongLine):
                yield raw
            else:
                yield self._decode(raw)

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fallback_lines += 1
            if self._fallback_counter is not None:
                self._fallback_counter.inc()
            return raw.decode(FALLBACK_ENCODING, errors="replace")

    def _read_chunk(self) -> bytes:
        # ``read1`` hands over what one underlying read produced. A decompressor that fails
        # later (truncated .gz/.xz) has then delivered everything before the failure, whereas
        # a buffered ``read(n)`` that hits the failure drops the bytes it had already gathered.
        read1 = getattr(self._stream, "read1", None)
        if read1 is not None:
            return read1(self._chunk_bytes)
        return self._stream.read(self._chunk_bytes)

    def _too_long(self, line: bytes) -> TooLongLine:
        return TooLongLine(line[:200].decode("utf-8", errors="replace"))

    def _raw_lines(self) -> Iterator[bytes | TooLongLine]:
        pending = b""
        skipping_long_line = False
        first = True
        while True:
            try:
                chunk = self._read_chunk()
            except Exception as error:  # noqa: BLE001 - any codec/IO failure ends this file only
                self.error = f"{type(error).__name__}: {error}"
                if pending and not skipping_long_line:
                    # The line the failure cut is incomplete: it must not pair as a record.
                    self.error += f" ({len(pending)} bytes of an unterminated last line dropped)"
                return
            if not chunk:
                break
            if first:
                self.head = chunk[:SNIFF_BYTES]
                if looks_binary(self.head):
                    self.binary = True
                    return
                if chunk.startswith(UTF8_BOM):
                    chunk = chunk[len(UTF8_BOM) :]
                first = False
            self.bytes_read += len(chunk)
            parts = without_blank_lines(pending + chunk).split(b"\n")
            pending = parts.pop()
            for part in parts:
                if skipping_long_line:
                    skipping_long_line = False
                    continue
                # Limits count a line's bytes without its "\n" and final CRs, as for
                # ``pending`` below (so where a chunk ends never changes the verdict): a line
                # ending in the chunk that pushed it past the limit is too long as well.
                too_long = len(part.rstrip(b"\r")) > self._max_line_bytes
                yield self._too_long(part) if too_long else part.rstrip(b"\r")
            if len(pending.rstrip(b"\r")) > self._max_line_bytes:
                if not skipping_long_line:
                    yield self._too_long(pending)
                skipping_long_line = True
                pending = b""
        if pending and not skipping_long_line:
            yield pending.rstrip(b"\r")  # at most max_line_bytes: checked after the last chunk


def parse_stream(
    stream: BinaryIO, ctx: FileContext, fallback_counter: Any = None
) -> Iterator[Record | DeadLetter]:
    """All records and dead letters of one file; file-level failures become dead letters.

    One bad file yields dead letters and never raises, so it cannot fail a whole run.
    ``fallback_counter`` counts the lines decoded with the fallback encoding.
    """
    reader = LineReader(stream, fallback_counter=fallback_counter)
    emitted = 0
    for item in parse_lines(reader, ctx):
        emitted += 1
        yield item
    if reader.binary:
        yield DeadLetter.of(ctx.source_file, None, BINARY_FILE, repr(reader.head[:80]))
    elif reader.error is not None:
        yield DeadLetter.of(ctx.source_file, None, READ_ERROR, reader.error)
    elif reader.bytes_read == 0:
        yield DeadLetter.of(ctx.source_file, None, EMPTY_FILE, "")
    elif emitted == 0:
        head = reader.head.decode("utf-8", errors="replace")
        yield DeadLetter.of(ctx.source_file, None, NO_RECORDS, head)
