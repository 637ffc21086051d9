"""Beam adapters for reading dumps: file patterns -> files -> records + dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.metrics import Metrics

from transforms.lines import decompressed, parse_stream
from transforms.parse import READ_ERROR, file_context
from transforms.records import DeadLetter, Record

RECORDS = "records"
DEAD_LETTERS = "dead_letters"
NAMESPACE = "digestflow"


class ReadDigests(beam.PTransform):
    """File patterns (local or ``gs://``, plain/.gz/.bz2) -> readable files, each once.

    Overlapping patterns are deduplicated by path, then files are spread over workers.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "FilePatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "KeyByPath" >> beam.Map(lambda m: (m.path, m))
            | "OncePerPath" >> beam.CombinePerKey(_first_metadata)
            | "DropPathKey" >> beam.Values()
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
        )


def _first_metadata(metadatas) -> FileMetadata:
    return min(metadatas, key=lambda m: m.path)


class ParseDigestFileFn(beam.DoFn):
    """One readable file -> its records (main output) and dead letters (tagged)."""

    def __init__(self, digest_year: int | None = None) -> None:
        self._digest_year = digest_year
        self._files = Metrics.counter(NAMESPACE, "files_matched")
        self._records = Metrics.counter(NAMESPACE, "records_parsed")
        self._dead = Metrics.counter(NAMESPACE, "dead_letters")
        self._fallback = Metrics.counter(NAMESPACE, "lines_decoded_with_fallback")

    def process(self, readable_file: fileio.ReadableFile) -> Iterator:
        metadata = readable_file.metadata
        ctx = file_context(
            metadata.path, _year(metadata.last_updated_in_seconds), self._digest_year
        )
        self._files.inc()
        try:
            raw = readable_file.open(
                mime_type="application/octet-stream",
                compression_type=CompressionTypes.UNCOMPRESSED,
            )
            stream = decompressed(raw, metadata.path)
        except Exception as error:  # noqa: BLE001 - an unreadable file is a dead letter
            yield self._dead_letter(DeadLetter.of(ctx.source_file, None, READ_ERROR, repr(error)))
            return
        with raw, stream:
            for item in parse_stream(stream, ctx):
                if isinstance(item, Record):
                    self._records.inc()
                    yield item
                else:
                    yield self._dead_letter(item)

    def _dead_letter(self, letter: DeadLetter) -> beam.pvalue.TaggedOutput:
        self._dead.inc()
        Metrics.counter(NAMESPACE, f"dead_letters.{letter.reason}").inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)


def _year(seconds: float | None) -> int | None:
    if not seconds:
        return None
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).year


class ParseDigests(beam.PTransform):
    """Readable files -> ``result.records`` and ``result.dead_letters``."""

    def __init__(self, digest_year: int | None = None) -> None:
        super().__init__()
        self._digest_year = digest_year

    def expand(self, files: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return files | "ParseFiles" >> beam.ParDo(
            ParseDigestFileFn(self._digest_year)
        ).with_outputs(DEAD_LETTERS, main=RECORDS)
