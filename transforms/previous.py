"""Read the current version of an output back into a pipeline, for ``--incremental``.

An update re-clusters the records of the previous version together with the new ones (so
the result equals one full run over every dump ingested so far), but it never parses an
old dump again and never embeds a text twice: the previous version's canonical
embeddings come back keyed by the hash of the text they embed.

    root ─┬─ records/     ─ ReadRecordTables    ─ RecordsOfRows     -> Record
          ├─ embeddings/  ─ ReadEmbeddingTables ─ KnownEmbeddings   -> (text key, vector)
          ├─ dead_letter/ ─ ReadDeadLetters                         -> dead letter rows
          └─ inputs/      ─ ReadInputs                              -> input rows
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadFromParquet, ReadFromParquetBatched
from apache_beam.metrics import Metrics

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


def embeddings_of_table(table: pa.Table) -> Iterator[tuple[str, np.ndarray]]:
    """(text key, vector) of a batch of ``embeddings`` rows; the vectors come out of the
    Arrow buffer as one float32 matrix, not as Python lists."""
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


class PreviousVersion(NamedTuple):
    records: beam.PCollection
    embeddings: beam.PCollection
    dead_letters: beam.PCollection
    inputs: beam.PCollection


class ReadPreviousVersion(beam.PTransform):
    """A version directory -> :class:`PreviousVersion` (records, known embeddings, dead
    letter rows, input rows). ``with_embeddings=False``: no embeddings are read back."""

    def __init__(self, root: str, with_embeddings: bool = True) -> None:
        super().__init__()
        self._root = root
        self._with_embeddings = with_embeddings

    def expand(self, pbegin: beam.pvalue.PBegin) -> PreviousVersion:
        carried = Metrics.counter(NAMESPACE, "records_carried")
        records = (
            pbegin
            | "ReadRecordTables"
            # Without the embedding column: pyarrow (25) cannot read back a fixed-size list
            # holding nulls (rows whose embedding failed), and clustering does not need it.
            >> ReadFromParquetBatched(self._glob("records"), columns=RECORD_COLUMNS)
            | "RecordsOfRows" >> beam.FlatMap(_counted_records, carried)
        )
        if self._with_embeddings:
            embeddings = (
                pbegin
                | "ReadEmbeddingTables" >> ReadFromParquetBatched(self._glob("embeddings"))
                | "KnownEmbeddings" >> beam.FlatMap(embeddings_of_table)
            )
        else:
            embeddings = pbegin | "NoEmbeddings" >> beam.Create([])
        return PreviousVersion(
            records=records,
            embeddings=embeddings,
            dead_letters=pbegin | "ReadDeadLetters" >> ReadFromParquet(self._glob("dead_letter")),
            inputs=pbegin | "ReadInputs" >> ReadFromParquet(self._glob("inputs")),
        )

    def _glob(self, table: str) -> str:
        return FileSystems.join(self._root, table, "*.parquet")


REUSE = "reuse"


class EmbeddedTexts(NamedTuple):
    """``embeddings``: (cluster_id, vector); ``by_text``: (text key, vector) of every text
    embedded or reused (the ``embeddings`` table, what a later update reuses);
    ``failures``: (cluster_id, error message)."""

    embeddings: beam.PCollection
    by_text: beam.PCollection
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
    """(cluster_id, text) -> :class:`EmbeddedTexts`: texts whose embedding ``known``
    ((text key, vector), see :func:`embedding_key`) already holds are not embedded again.
    Counters ``embedded_texts`` (sent to the model) and ``embeddings_reused``.

    Two canonicals never share a text (equal texts are exact duplicates, one cluster), so
    a text is embedded at most once per run, and never again by a later update.
    """

    def __init__(self, config: EmbedConfig, known: beam.PCollection | None = None) -> None:
        super().__init__()
        self._config = config
        self._known = known

    def expand(self, texts: beam.PCollection) -> EmbeddedTexts:
        pipeline = texts.pipeline
        known = self._known
        if known is None:
            known = pipeline | "NoKnownEmbeddings" >> beam.Create([])
        split = (
            {
                "want": texts | "KeyByText" >> beam.Map(lambda kv: (embedding_key(kv[1]), kv)),
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
            by_text=both | "ByText" >> beam.Map(lambda kv: (kv[0][1], kv[1])),
            failures=fresh.failures | "FailedCluster" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
        )
