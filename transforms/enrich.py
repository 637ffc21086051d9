"""Embed and tag papers: each cluster's canonical text is embedded once and its vector and
tags are shared by every record of the cluster.

    rows ─ Canonicals ─ CanonicalTexts ─ EmbedTexts ─┬─ TagPapers ─┐
       └──────────────── KeyByCluster ───────────────┴─ JoinEnrichment [records of a cluster]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.embed import EmbedConfig, EmbedTexts, embedding_text
from transforms.read import NAMESPACE
from transforms.tags import TagPapers, Taxonomy


class EmbedAndTagPapers(beam.PTransform):
    """Record rows -> the same rows with ``embedding``, ``tags`` and ``tag_scores`` set."""

    def __init__(self, config: EmbedConfig, taxonomy: Taxonomy | None = None) -> None:
        super().__init__()
        self._config = config
        self._taxonomy = taxonomy

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        template = self._config.text_template
        canonicals = rows | "Canonicals" >> beam.Filter(lambda row: row["is_canonical"])
        embedded = (
            canonicals
            | "CanonicalTexts"
            >> beam.Map(
                lambda r: (r["cluster_id"], embedding_text(r["title"], r["abstract"], template))
            )
            | "CountEmbeddedTexts"
            >> beam.Map(_counted, Metrics.counter(NAMESPACE, "embedded_texts"))
            | "EmbedTexts" >> EmbedTexts(self._config)
        )
        _ = embedded.failures | "CountEmbeddingFailures" >> beam.Map(
            _counted, Metrics.counter(NAMESPACE, "embedding_failures")
        )
        tagged = (
            {
                "row": canonicals
                | "CanonicalByCluster" >> beam.Map(lambda r: (r["cluster_id"], r)),
                "embedding": embedded.embeddings,
            }
            | "JoinEmbeddings" >> beam.CoGroupByKey()
            | "TagInputs" >> beam.FlatMap(_tag_input)
            | "TagPapers" >> TagPapers(self._taxonomy, self._config)
            | "KeyTags" >> beam.Map(lambda t: (t[0], (t[1], t[2])))
        )
        return (
            {
                "rows": rows | "KeyByCluster" >> beam.Map(lambda r: (r["cluster_id"], r)),
                "embedding": embedded.embeddings,
                "tags": tagged,
            }
            | "JoinEnrichment" >> beam.CoGroupByKey()
            | "EnrichRows" >> beam.FlatMap(_enrich)
        )


def _counted(element: Any, counter) -> Any:
    counter.inc()
    return element


def _tag_input(element) -> Iterator[tuple]:
    _, joined = element
    for row in joined["row"]:
        for embedding in joined["embedding"]:
            yield row["cluster_id"], embedding, row["title"], row["abstract"], row["code_urls"]


def _enrich(element) -> Iterator[dict[str, Any]]:
    _, joined = element
    embeddings = list(joined["embedding"])
    tags = list(joined["tags"])
    embedding = embeddings[0] if embeddings else None
    tag_list, scores = tags[0] if tags else ([], [])
    tag_scores = [{"tag": tag, "score": score} for tag, score in scores]
    for row in joined["rows"]:
        yield {**row, "embedding": embedding, "tags": tag_list, "tag_scores": tag_scores}
