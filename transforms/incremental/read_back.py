"""Reading an earlier version back into an update's pipeline (``--incremental``).

An update clusters the new records together with the part of the previous version they
reach (:mod:`transforms.incremental.part`). Old records are read back from Parquet, never
re-parsed; the update's launcher names the files (the part's records, the version's
``embeddings`` files), so nothing here lists a store.

    record files    ─ ReadRecordTables ─ RecordsOfRows -> Record
    embedding files ─ ReadEmbeddingTables            -> Arrow tables of known vectors
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from transforms.incremental.part import UpdatePartSource, load_part
from transforms.metrics import counter
from transforms.parquet import read_parquet_file
from transforms.records import Record

# The record columns a Record is rebuilt from (everything clustering looks at).
RECORD_COLUMNS = [
    "record_id",
    "source_file",
    "record_index",
    "digest_date",
    "title",
    "abstract",
    "content_hash",
    "code_urls",
]


def records_of_table(table: pa.Table) -> Iterator[Record]:
    """The Records of a batch of ``records`` rows."""
    for row in table.to_pylist():
        yield Record.of_row(row)


def _counted_records(table: pa.Table, counter) -> Iterator[Record]:
    for record in records_of_table(table):
        counter.inc()
        yield record


@dataclass(frozen=True)
class UpdateSources:
    """What an update's pipeline reads besides the new dumps: the files of the previous
    version's records it clusters again (``record_files``; written by the update's planner,
    they need not exist before the job runs), the previous version's ``embeddings`` files
    (None: no embeddings to reuse), and the part (:class:`transforms.incremental.part.
    UpdatePart`, or the path of its file) naming the new records that joined a known cluster
    without the pipeline."""

    record_files: list[str]
    embedding_files: list[str] | None = None
    plan: UpdatePartSource | None = None


class _SkipJoinedFn(beam.DoFn):
    def __init__(self, plan: UpdatePartSource) -> None:
        self._plan = plan
        self._joined_counter = counter("records_joined_known")

    def setup(self) -> None:
        self._joined = load_part(self._plan).joined

    def process(self, record: Record) -> Iterator[Record]:
        if record.record_id in self._joined:
            self._joined_counter.inc()
        else:
            yield record


class SkipJoinedCopies(beam.PTransform):
    """New Records -> those the update's plan did not join to a known cluster directly
    (the planner writes those rows; counter ``records_joined_known``)."""

    def __init__(self, plan: UpdatePartSource) -> None:
        super().__init__()
        self._plan = plan

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "Skip" >> beam.ParDo(_SkipJoinedFn(self._plan))


class PreviousVersion(NamedTuple):
    records: beam.PCollection  # Records of the affected part
    embedding_tables: beam.PCollection | None  # Arrow tables of the ``embeddings`` table


class ReadPreviousVersion(beam.PTransform):
    """Files of an earlier version -> :class:`PreviousVersion`: the Records to cluster again
    (counter ``records_reclustered``) and, given ``embedding_files``, the known embeddings as
    Arrow tables for :class:`transforms.enrich.known.EmbedUnseenTexts` to pick from. Each
    file is one element, read whole (a version's files are row-group sized)."""

    def __init__(self, record_files: list[str], embedding_files: list[str] | None = None) -> None:
        super().__init__()
        self._record_files = list(record_files)
        self._embedding_files = embedding_files

    def expand(self, pbegin: beam.pvalue.PBegin) -> PreviousVersion:
        records = (
            pbegin
            | "RecordFiles" >> beam.Create(self._record_files)
            # Without the embedding column: pyarrow (25) cannot read back a fixed-size list
            # holding nulls (rows whose embedding failed), and clustering does not need it.
            | "ReadRecordTables" >> beam.Map(read_parquet_file, RECORD_COLUMNS)
            | "RecordsOfRows" >> beam.FlatMap(_counted_records, counter("records_reclustered"))
        )
        embeddings = None
        if self._embedding_files is not None:
            embeddings = (
                pbegin
                | "EmbeddingFiles" >> beam.Create(self._embedding_files)
                | "ReadEmbeddingTables" >> beam.Map(read_parquet_file)
            )
        return PreviousVersion(records=records, embedding_tables=embeddings)
