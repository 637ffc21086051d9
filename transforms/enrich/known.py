"""Embeddings computed by earlier runs, reused instead of sending a text to the model again.

Every text the model ever embedded is kept in the ``embeddings`` table, keyed by
:func:`embedding_key` (the hash of the exact text); :class:`EmbedUnseenTexts` picks the known
vectors of the texts at hand and embeds only the others.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.enrich.embed import EmbedConfig, EmbedTexts
from transforms.incremental.part import UpdatePartSource, load_part
from transforms.metrics import counter


def embedding_key(text: str) -> str:
    """Identity of an embedded text: equal keys mean the model saw the same string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


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


REUSE = "reuse"


class EmbeddedTexts(NamedTuple):
    """``embeddings``: (cluster_id, vector); ``fresh``: (text key, vector) of every text
    this run sent to the model (added to the ``embeddings`` table, what a later update
    reuses); ``failures``: (cluster_id, error message)."""

    embeddings: beam.PCollection
    fresh: beam.PCollection
    failures: beam.PCollection


class _ReuseOrEmbed(beam.DoFn):
    """(text key, {want: [(cluster_id, text)], known: [vector]}) -> ((cluster_id, key),
    vector) when the text was embedded before (tagged), else ((cluster_id, key), text).

    A vector an update's plan embedded this run (``planned_embeddings`` of the part) counts
    as ``embeddings_planned``, not as reused: it was computed now, not by an earlier run."""

    def __init__(self, plan: UpdatePartSource | None = None) -> None:
        self._plan = plan
        self._planned: frozenset[str] = frozenset()
        self._reused = counter("embeddings_reused")
        self._from_plan = counter("embeddings_planned")
        self._embedded = counter("embedded_texts")

    def setup(self) -> None:
        if self._plan is not None:
            self._planned = load_part(self._plan).planned_embeddings

    def process(self, element) -> Iterator:
        key, joined = element
        vectors = list(itertools.islice(joined["known"], 1))
        for cluster_id, text in joined["want"]:
            if vectors:
                (self._from_plan if key in self._planned else self._reused).inc()
                yield beam.pvalue.TaggedOutput(REUSE, ((cluster_id, key), vectors[0]))
            else:
                self._embedded.inc()
                yield (cluster_id, key), text


class EmbedUnseenTexts(beam.PTransform):
    """(cluster_id, text) -> :class:`EmbeddedTexts`: texts whose embedding is in ``known``
    (Arrow tables of the ``embeddings`` table, keyed by :func:`embedding_key`) are not
    embedded again. Counters ``embedded_texts`` (sent to the model), ``embeddings_reused`` and
    ``embeddings_planned`` (vectors an update's plan computed this run, see ``plan``).
    Only the vectors of the texts at hand leave the known tables (a side input of their
    keys filters each table), not the whole table.

    Two canonicals never share a text (equal texts are exact duplicates, one cluster), so
    a text is embedded at most once per run, and never again by a later update.
    """

    def __init__(
        self,
        config: EmbedConfig,
        known: beam.PCollection | None = None,
        plan: UpdatePartSource | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._known = known
        self._plan = plan

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
            >> beam.ParDo(_ReuseOrEmbed(self._plan)).with_outputs(REUSE, main="embed")
        )
        fresh = split.embed | "EmbedTexts" >> EmbedTexts(self._config)
        both = (split[REUSE], fresh.embeddings) | "AllEmbeddings" >> beam.Flatten()
        return EmbeddedTexts(
            embeddings=both | "ByCluster" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
            fresh=fresh.embeddings | "ByText" >> beam.Map(lambda kv: (kv[0][1], kv[1])),
            failures=fresh.failures | "FailedCluster" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
        )
