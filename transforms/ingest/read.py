"""Beam adapters for reading dumps: file patterns -> files -> records + dead letters."""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

from transforms.ingest.lines import decompressed, parse_stream
from transforms.ingest.parse import NOT_A_FILE, READ_ERROR, file_context
from transforms.metrics import counter
from transforms.records import DeadLetter, Record

RECORDS = "records"
DEAD_LETTERS = "dead_letters"
INPUT_FILES = "input_files"
HASH_CHUNK = 1 << 20


class HashingReader:
    """A binary stream that hashes (SHA-256) every byte read through it.

    The hash of a file's stored bytes identifies a dump whatever its name, so an update can
    tell a dump it already ingested (``beam_jobs.incremental.dumps``). ``finish()`` reads
    what the parser left unread, so the digest always covers the whole file.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def finish(self) -> str:
        while self.read(HASH_CHUNK):
            pass
        return self._hash.hexdigest()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NotARegularFile(OSError):
    """A local input that is not a regular file (a FIFO, a directory, a device)."""


def check_regular_file(path: str) -> None:
    """Refuse a local path that is not a regular file before anything opens it: ``open()``
    on a FIFO blocks until a writer comes, maybe forever. Remote paths are not checked.

    Raises :class:`NotARegularFile`, or the ``OSError`` of ``os.stat`` (a missing file).
    """
    if "://" in path:
        return
    mode = os.stat(path).st_mode  # follows symlinks: a link to a FIFO is a FIFO
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{path} is not a regular file ({_file_kind(mode)}); not opened")


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def dump_sha256(path: str) -> str:
    """SHA-256 of a dump's stored bytes (a compressed dump is not decompressed): the digest
    the pipeline records in the ``inputs`` table while parsing it. A local path that is not
    a regular file raises :class:`NotARegularFile` (it is never opened)."""
    check_regular_file(path)
    with HashingReader(
        FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    ) as reader:
        return reader.finish()


class ReadDigests(beam.PTransform):
    """File patterns (local or ``gs://``, plain/.gz/.bz2) -> readable files, each once.

    Overlapping patterns are deduplicated by path, then files are spread over workers. A
    pattern that matches nothing here (a file deleted after the launcher checked the inputs)
    goes on as an :class:`Unmatched` file, which :class:`ParseDigestFileFn` dead-letters.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "FilePatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> beam.ParDo(MatchOrMissFn())
            | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
            | "OncePerPath" >> beam.CombinePerKey(_first_metadata)
            | "DropPathKey" >> beam.Values()
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
        )


class Unmatched(FileMetadata):
    """A pattern that matched no file: ``path`` is the file it names (or the pattern)."""

    def __init__(self, pattern: str) -> None:
        super().__init__(literal_path(pattern), 0)
        self.pattern = pattern


def literal_path(pattern: str) -> str:
    """The path a ``glob.escape``d pattern names (the pattern itself if it is a real glob)."""
    unescaped = re.sub(r"\[([*?[])\]", r"\1", pattern)
    return unescaped if glob.escape(unescaped) == pattern else pattern


class MatchOrMissFn(beam.DoFn):
    """A pattern -> the metadata of every file it matches, or one :class:`Unmatched`."""

    def process(self, pattern: str) -> Iterator[FileMetadata]:
        metadata_list = FileSystems.match([pattern])[0].metadata_list
        if not metadata_list:
            yield Unmatched(pattern)
        yield from metadata_list


def _first_metadata(metadatas) -> FileMetadata:
    return min(metadatas, key=lambda m: m.path)


class ParseDigestFileFn(beam.DoFn):
    """One readable file -> its records (main output) and dead letters (tagged)."""

    def __init__(self, digest_year: int | None = None) -> None:
        self._digest_year = digest_year
        self._files = counter("files_matched")
        self._records = counter("records_parsed")
        self._dead = counter("dead_letters")
        self._fallback = counter("lines_decoded_with_fallback")

    def process(self, readable_file: fileio.ReadableFile) -> Iterator:
        metadata = readable_file.metadata
        ctx = file_context(
            metadata.path, modified_year(metadata.last_updated_in_seconds), self._digest_year
        )
        self._files.inc()
        if isinstance(metadata, Unmatched):
            detail = (
                f"FileNotFoundError: no file matches {metadata.pattern!r} when the pipeline "
                "reads its inputs (deleted or moved after the input check?)"
            )
            yield self._dead_letter(DeadLetter.of(ctx.source_file, None, READ_ERROR, detail))
            yield beam.pvalue.TaggedOutput(INPUT_FILES, _unread_file(ctx.source_file))
            return
        try:
            check_regular_file(metadata.path)
            raw = HashingReader(
                readable_file.open(
                    mime_type="application/octet-stream",
                    compression_type=CompressionTypes.UNCOMPRESSED,
                )
            )
            try:
                stream = decompressed(raw, metadata.path)
            except Exception:
                raw.close()
                raise
        except NotARegularFile as error:
            yield self._dead_letter(DeadLetter.of(ctx.source_file, None, NOT_A_FILE, str(error)))
            yield beam.pvalue.TaggedOutput(INPUT_FILES, _unread_file(ctx.source_file))
            return
        except Exception as error:  # noqa: BLE001 - an unreadable file is a dead letter
            yield self._dead_letter(DeadLetter.of(ctx.source_file, None, READ_ERROR, repr(error)))
            yield beam.pvalue.TaggedOutput(INPUT_FILES, _unread_file(ctx.source_file))
            return
        records = dead = 0
        with raw, stream:
            for item in parse_stream(stream, ctx, self._fallback):
                if isinstance(item, Record):
                    records += 1
                    self._records.inc()
                    yield item
                else:
                    dead += 1
                    yield self._dead_letter(item)
            try:
                digest = raw.finish()
            except Exception:  # noqa: BLE001 - already dead-lettered by parse_stream
                digest = None
        yield beam.pvalue.TaggedOutput(
            INPUT_FILES,
            {
                "source_file": ctx.source_file,
                "sha256": digest,
                "size_bytes": raw.size,
                "records": records,
                "dead_letters": dead,
            },
        )

    def _dead_letter(self, letter: DeadLetter) -> beam.pvalue.TaggedOutput:
        self._dead.inc()
        counter(f"dead_letters.{letter.reason}").inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)


def _unread_file(source_file: str) -> dict[str, Any]:
    return {
        "source_file": source_file,
        "sha256": None,
        "size_bytes": 0,
        "records": 0,
        "dead_letters": 1,
    }


def modified_year(seconds: float | None) -> int | None:
    """The year of a file's last modification (the date rule's last resort)."""
    if not seconds:
        return None
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).year


class ParseDigests(beam.PTransform):
    """Readable files -> ``result.records``, ``result.dead_letters`` and
    ``result.input_files`` (one row per file: the ``inputs`` table of transforms.schema)."""

    def __init__(self, digest_year: int | None = None) -> None:
        super().__init__()
        self._digest_year = digest_year

    def expand(self, files: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return files | "ParseFiles" >> beam.ParDo(
            ParseDigestFileFn(self._digest_year)
        ).with_outputs(DEAD_LETTERS, INPUT_FILES, main=RECORDS)
