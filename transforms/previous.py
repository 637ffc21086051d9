"""Read the current version of an output back into a pipeline, for ``--incremental``.

An update clusters the new records together with the part of the previous version they
reach (:mod:`transforms.affected`); the rest of that version is copied as it is
(:mod:`beam_jobs.carry`). Old records are read back from Parquet, never
re-parsed, and a text embedded before is never embedded again: the previous version's
``embeddings`` table maps the hash of every embedded text to its vector.

    root ─┬─ records/     ─ ReadRecordTables ─ RecordsOfRows (the affected part) -> Record
          └─ embeddings/  ─ ReadEmbeddingTables                -> Arrow tables of vectors
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.affected import AffectedSource, resolve
from transforms.embed import (
    EmbedConfig,
    EmbedTexts,
)
from transforms.read import NAMESPACE
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


def embedding_key(text: str) -> str:
    """Identity of an embedded text: equal keys mean the model saw the same string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def records_of_table(table: pa.Table) -> Iterator[Record]:
    """The Records of a batch of ``records`` rows."""
    for row in table.to_pylist():
        yield Record.of_row(row)


def embeddings_of_table(
    table: pa.Table, wanted: Iterable[str] | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """(text key, vector) of a batch of ``embeddings`` rows (only keys in ``wanted``, if
    given); the vectors come out of the Arrow buffer as one float32 matrix, not as lists."""
    if wanted is not None:
        keys = pa.array(sorted(set(wanted)), pa.string())
        table = table.filter(pc.is_in(table.column("text_key"), value_set=keys))
    if table.num_rows == 0:
        return
    embedding = table.column("embedding").combine_chunks()
    dim = embedding.type.list_size
    vectors = embedding.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    for key, vector in zip(table.column("text_key").to_pylist(), vectors, strict=True):
        yield key, vector.astype(np.float32, copy=True)


def _counted_records(table: pa.Table, counter) -> Iterator[Record]:
    for record in records_of_table(table):
        counter.inc()
        yield record


@dataclass(frozen=True)
class UpdateSources:
    """What an update's pipeline reads besides the new dumps: the previous version
    (``root``), the records it clusters again (``part_records`` files; None: all of the
    version's), and the plan (:class:`transforms.affected.Affected`, or the path of its
    file) naming the new records that joined a known cluster without the pipeline."""

    root: str
    part_records: list[str] | None = None
    plan: AffectedSource | None = None


class _SkipJoinedFn(beam.DoFn):
    def __init__(self, plan: AffectedSource) -> None:
        self._plan = plan
        self._joined_counter = Metrics.counter(NAMESPACE, "records_joined_known")

    def setup(self) -> None:
        self._joined = resolve(self._plan).joined

    def process(self, record: Record) -> Iterator[Record]:
        if record.record_id in self._joined:
            self._joined_counter.inc()
        else:
            yield record


class SkipJoinedCopies(beam.PTransform):
    """New Records -> those the update's plan did not join to a known cluster directly
    (the planner writes those rows; counter ``records_joined_known``)."""

    def __init__(self, plan: AffectedSource) -> None:
        super().__init__()
        self._plan = plan

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "Skip" >> beam.ParDo(_SkipJoinedFn(self._plan))


class PreviousVersion(NamedTuple):
    records: beam.PCollection  # Records of the affected part
    embedding_tables: beam.PCollection | None  # Arrow tables of the ``embeddings`` table


class ReadPreviousVersion(beam.PTransform):
    """A version directory -> :class:`PreviousVersion`: the Records to cluster again
    (counter ``records_reclustered``) and the known embeddings (unless
    ``with_embeddings=False``), as Arrow tables for :class:`EmbedUnseenTexts` to pick from.

    ``part_records``: files holding the records of the affected part (an update's planner
    writes them, see :mod:`beam_jobs.carry`; they need not exist before the job runs);
    default: every record of the version.
    """

    def __init__(
        self, root: str, part_records: list[str] | None = None, with_embeddings: bool = True
    ) -> None:
        super().__init__()
        self._root = root
        self._part_records = part_records
        self._with_embeddings = with_embeddings

    def expand(self, pbegin: beam.pvalue.PBegin) -> PreviousVersion:
        files = self._part_records
        if files is None:
            files = self._files("records")
        records = (
            pbegin
            | "RecordFiles" >> beam.Create(files)
            # Without the embedding column: pyarrow (25) cannot read back a fixed-size list
            # holding nulls (rows whose embedding failed), and clustering does not need it.
            | "ReadRecordTables" >> beam.Map(read_parquet_file, RECORD_COLUMNS)
            | "RecordsOfRows"
            >> beam.FlatMap(_counted_records, Metrics.counter(NAMESPACE, "records_reclustered"))
        )
        embeddings = None
        if self._with_embeddings:
            embeddings = (
                pbegin
                | "EmbeddingFiles" >> beam.Create(self._files("embeddings"))
                | "ReadEmbeddingTables" >> beam.Map(read_parquet_file)
            )
        return PreviousVersion(records=records, embedding_tables=embeddings)

    def _files(self, table: str) -> list[str]:
        """The table's files, listed when the job is built (an update plans locally): one
        element each, read whole (a previous version's files are row-group sized)."""
        pattern = FileSystems.join(self._root, table, "*.parquet")
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_parquet_file(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path) as fh:
        return pq.read_table(fh, columns=columns)


REUSE = "reuse"


class EmbeddedTexts(NamedTuple):
    """``embeddings``: (cluster_id, vector); ``fresh``: (text key, vector) of every text
    this run sent to the model (added to the ``embeddings`` table, what a later update
    reuses); ``failures``: (cluster_id, error message)."""

    embeddings: beam.PCollection
    fresh: beam.PCollection
    failures: beam.PCollection


def _reuse_or_embed(element, reused_counter, embedded_counter) -> Iterator:
    """(text key, {want: [(cluster_id, text)], known: [vector]}) -> ((cluster_id, key),
    vector) when the text was embedded before (tagged), else ((cluster_id, key), text)."""
    key, joined = element
    vectors = list(itertools.islice(joined["known"], 1))
    for cluster_id, text in joined["want"]:
        if vectors:
            reused_counter.inc()
            yield beam.pvalue.TaggedOutput(REUSE, ((cluster_id, key), vectors[0]))
        else:
            embedded_counter.inc()
            yield (cluster_id, key), text


class EmbedUnseenTexts(beam.PTransform):
    """(cluster_id, text) -> :class:`EmbeddedTexts`: texts whose embedding is in ``known``
    (Arrow tables of the ``embeddings`` table, keyed by :func:`embedding_key`) are not
    embedded again. Counters ``embedded_texts`` (sent to the model) and ``embeddings_reused``.
    Only the vectors of the texts at hand leave the known tables (a side input of their
    keys filters each table), not the whole table.

    Two canonicals never share a text (equal texts are exact duplicates, one cluster), so
    a text is embedded at most once per run, and never again by a later update.
    """

    def __init__(self, config: EmbedConfig, known: beam.PCollection | None = None) -> None:
        super().__init__()
        self._config = config
        self._known = known

    def expand(self, texts: beam.PCollection) -> EmbeddedTexts:
        pipeline = texts.pipeline
        wanted = texts | "KeyByText" >> beam.Map(lambda kv: (embedding_key(kv[1]), kv))
        if self._known is None:
            known = pipeline | "NoKnownEmbeddings" >> beam.Create([])
        else:
            keys = beam.pvalue.AsList(wanted | "WantedKeys" >> beam.Keys())
            known = self._known | "KnownEmbeddings" >> beam.FlatMap(embeddings_of_table, keys)
        split = (
            {
                "want": wanted,
                "known": known,
            }
            | "JoinKnownEmbeddings" >> beam.CoGroupByKey()
            | "ReuseOrEmbed"
            >> beam.FlatMap(
                _reuse_or_embed,
                Metrics.counter(NAMESPACE, "embeddings_reused"),
                Metrics.counter(NAMESPACE, "embedded_texts"),
            ).with_outputs(REUSE, main="embed")
        )
        fresh = split.embed | "EmbedTexts" >> EmbedTexts(self._config)
        both = (split[REUSE], fresh.embeddings) | "AllEmbeddings" >> beam.Flatten()
        return EmbeddedTexts(
            embeddings=both | "ByCluster" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
            fresh=fresh.embeddings | "ByText" >> beam.Map(lambda kv: (kv[0][1], kv[1])),
            failures=fresh.failures | "FailedCluster" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
        )
