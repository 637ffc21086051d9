"""Read the current version of an output back into a pipeline, for ``--incremental``.

An update re-clusters the records of the previous version together with the new ones (so
the result equals one full run over every dump ingested so far), but it never parses an
old dump again and never embeds a text twice: the previous version's canonical
embeddings come back keyed by the hash of the text they embed.

    root ─┬─ records/     ─ ReadRecordTables ─┬─ RecordsOfRows    -> Record
          │                                   └─ KnownEmbeddings  -> (text key, vector)
          ├─ dead_letter/ ─ ReadDeadLetters                       -> dead letter rows
          └─ inputs/      ─ ReadInputs                            -> input rows
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadFromParquet, ReadFromParquetBatched
from apache_beam.metrics import Metrics

from transforms.embed import (
    TEXT_TEMPLATE,
    EmbedConfig,
    EmbedOutputs,
    EmbedTexts,
    embedding_text,
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
    columns = table.to_pydict()
    for i in range(table.num_rows):
        yield Record(
            record_id=columns["record_id"][i],
            source_file=columns["source_file"][i],
            record_index=columns["record_index"][i],
            digest_date=columns["digest_date"][i],
            title=columns["title"][i],
            abstract=columns["abstract"][i],
            content_hash=columns["content_hash"][i],
            code_urls=tuple(columns["code_urls"][i] or ()),
        )


def known_embeddings(table: pa.Table, template: str) -> Iterator[tuple[str, np.ndarray]]:
    """(embedding key, vector) of the canonical rows of a table that carry an embedding.

    ``template`` is the run's text template (the text the model saw). Vectors come out of
    the Arrow buffer as one float32 matrix, not as Python lists.
    """
    if "embedding" not in table.column_names:
        return
    canonical = table.filter(pc.field("is_canonical")).filter(pc.is_valid(pc.field("embedding")))
    if canonical.num_rows == 0:
        return
    embedding = canonical.column("embedding").combine_chunks()
    dim = embedding.type.list_size
    vectors = embedding.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    titles = canonical.column("title").to_pylist()
    abstracts = canonical.column("abstract").to_pylist()
    for title, abstract, vector in zip(titles, abstracts, vectors, strict=True):
        key = embedding_key(embedding_text(title, abstract, template))
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
    letter rows, input rows). ``text_template=None``: no embeddings are read back."""

    def __init__(self, root: str, text_template: str | None = TEXT_TEMPLATE) -> None:
        super().__init__()
        self._root = root
        self._template = text_template

    def expand(self, pbegin: beam.pvalue.PBegin) -> PreviousVersion:
        carried = Metrics.counter(NAMESPACE, "records_carried")
        records = (
            pbegin
            | "ReadRecordTables"
            >> ReadFromParquetBatched(self._glob("records"), columns=RECORD_COLUMNS)
            | "RecordsOfRows" >> beam.FlatMap(_counted_records, carried)
        )
        if self._template is None:
            embeddings = pbegin | "NoEmbeddings" >> beam.Create([])
        else:
            embeddings = (
                pbegin
                | "RecordFiles" >> beam.Create([self._glob("records")])
                | "MatchRecordFiles" >> fileio.MatchAll()
                | "KnownEmbeddings" >> beam.ParDo(_KnownEmbeddingsOfFile(self._template))
            )
        return PreviousVersion(
            records=records,
            embeddings=embeddings,
            dead_letters=pbegin | "ReadDeadLetters" >> ReadFromParquet(self._glob("dead_letter")),
            inputs=pbegin | "ReadInputs" >> ReadFromParquet(self._glob("inputs")),
        )

    def _glob(self, table: str) -> str:
        return FileSystems.join(self._root, table, "*.parquet")


class _KnownEmbeddingsOfFile(beam.DoFn):
    """A records file -> (embedding key, vector) of its embedded canonical rows.

    pyarrow (25) cannot read back a fixed-size list column that holds nulls (rows whose
    embedding failed): such a file's vectors are not reused, only embedded again, and the
    counter ``embedding_reuse_unreadable_files`` says so.
    """

    COLUMNS = ("title", "abstract", "is_canonical", "embedding")

    def __init__(self, template: str) -> None:
        self._template = template
        self._unreadable = Metrics.counter(NAMESPACE, "embedding_reuse_unreadable_files")

    def process(self, metadata) -> Iterator[tuple[str, np.ndarray]]:
        with FileSystems.open(metadata.path) as fh:
            parquet = pq.ParquetFile(fh)
            if "embedding" not in parquet.schema_arrow.names:
                return
            for group in range(parquet.num_row_groups):
                try:
                    table = parquet.read_row_group(group, columns=list(self.COLUMNS))
                except pa.ArrowInvalid:
                    self._unreadable.inc()
                    return
                yield from known_embeddings(table, self._template)


REUSE = "reuse"


def _reuse_or_embed(element, reused_counter, embedded_counter) -> Iterator:
    """(text key, {want: [(cluster_id, text)], known: [vector]}) -> (cluster_id, vector) when
    the text was embedded before, else the (cluster_id, text) to embed (tagged)."""
    _, joined = element
    vectors = list(joined["known"])
    for cluster_id, text in joined["want"]:
        if vectors:
            reused_counter.inc()
            yield beam.pvalue.TaggedOutput(REUSE, (cluster_id, vectors[0]))
        else:
            embedded_counter.inc()
            yield cluster_id, text


class EmbedUnseenTexts(beam.PTransform):
    """(cluster_id, text) -> :class:`~transforms.embed.EmbedOutputs`: texts whose embedding
    ``known`` ((text key, vector), see :func:`embedding_key`) already holds are not embedded
    again. Counters ``embedded_texts`` (sent to the model) and ``embeddings_reused``.

    Two canonicals never share a text (equal texts are exact duplicates, one cluster), so
    a text is embedded at most once per run, and never again by a later update.
    """

    def __init__(self, config: EmbedConfig, known: beam.PCollection | None = None) -> None:
        super().__init__()
        self._config = config
        self._known = known

    def expand(self, texts: beam.PCollection) -> EmbedOutputs:
        embedded_texts = Metrics.counter(NAMESPACE, "embedded_texts")
        if self._known is None:
            to_embed = texts | "CountEmbeddedTexts" >> beam.Map(_counted, embedded_texts)
            return to_embed | "EmbedTexts" >> EmbedTexts(self._config)
        reused = Metrics.counter(NAMESPACE, "embeddings_reused")
        split = (
            {
                "want": texts | "KeyByText" >> beam.Map(lambda kv: (embedding_key(kv[1]), kv)),
                "known": self._known,
            }
            | "JoinKnownEmbeddings" >> beam.CoGroupByKey()
            | "ReuseOrEmbed"
            >> beam.FlatMap(_reuse_or_embed, reused, embedded_texts).with_outputs(
                REUSE, main="embed"
            )
        )
        fresh = split.embed | "EmbedTexts" >> EmbedTexts(self._config)
        embeddings = (split[REUSE], fresh.embeddings) | "AllEmbeddings" >> beam.Flatten()
        return EmbedOutputs(embeddings, fresh.failures)


def _counted(element, counter):
    counter.inc()
    return element
