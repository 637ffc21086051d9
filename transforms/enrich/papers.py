"""Embed and tag papers: each cluster's canonical text is embedded once and its vector and
tags are shared by every record of the cluster.

    rows ─ Canonicals ─ CanonicalTexts ─ EmbedTexts ─┬─ TagPapers ─┐
       └──────────────── KeyByCluster ───────────────┴─ JoinEnrichment [records of a cluster]

With a :class:`~transforms.enrich.semantic.merges.SemanticConfig`, the embedded canonicals also go through
:class:`~transforms.enrich.semantic.merges.RevisionMerges` (revisions of one paper, see
:mod:`transforms.enrich.semantic.merges`); each merge carries the merged canonical's vector, is joined with
its tags (JoinMergedCanonical [tags of one canonical + the clusters merged into it]) and is
applied in the same JoinEnrichment, so rows are shuffled once either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam

from transforms.enrich.embed import EmbedConfig, embedding_text
from transforms.enrich.known import EmbedUnseenTexts
from transforms.enrich.semantic.evidence import names_row_of
from transforms.enrich.semantic.merges import RevisionMerges
from transforms.enrich.semantic.rule import Merge, SemanticConfig, candidate, merged_row
from transforms.enrich.semantic.vectors import VectorLSH, vector_keys
from transforms.enrich.tags.tagging import TagPapers, Taxonomy
from transforms.incremental.part import UpdatePartSource
from transforms.metrics import counted, counter


class EnrichedPapers(NamedTuple):
    """``rows``: records-table rows with embedding and tags (and merged clusters applied);
    ``merges``: (absorbed cluster_id, Merge), or None without semantic merging;
    ``fresh_embeddings``: (text key, vector) of every text this run sent to the model;
    ``names``: ``paper_names`` rows of every record (None without merging)."""

    rows: beam.PCollection
    merges: beam.PCollection | None
    fresh_embeddings: beam.PCollection
    names: beam.PCollection | None


class EmbedAndTagPapers(beam.PTransform):
    """Record rows -> :class:`EnrichedPapers`: the same rows with ``embedding``, ``tags`` and
    ``tag_scores`` set, and with ``semantic``, revisions of one paper merged into one cluster
    (apply ``merges`` to the clusters table with ``MergeClusterSummaries``)."""

    def __init__(
        self,
        config: EmbedConfig,
        taxonomy: Taxonomy | None = None,
        semantic: SemanticConfig | None = None,
        known_embeddings: beam.PCollection | None = None,
        update_part: UpdatePartSource | None = None,
        prototype_cache: str | None = None,
    ) -> None:
        """``known_embeddings``: Arrow tables of the ``embeddings`` table of an earlier run
        (:class:`transforms.incremental.read_back.ReadPreviousVersion`): those texts are not
        embedded again. ``update_part``: see :class:`transforms.enrich.semantic.merges.
        RevisionMerges`. ``prototype_cache``: the directory of
        :mod:`transforms.enrich.tags.cache` (None: embed the taxonomy in this pipeline)."""
        super().__init__()
        self._config = config
        self._taxonomy = taxonomy
        self._semantic = semantic
        self._known_embeddings = known_embeddings
        self._update_part = update_part
        self._prototype_cache = prototype_cache

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        template = self._config.text_template
        canonicals = rows | "Canonicals" >> beam.Filter(lambda row: row["is_canonical"])
        embedded = (
            canonicals
            | "CanonicalTexts"
            >> beam.Map(
                lambda r: (r["cluster_id"], embedding_text(r["title"], r["abstract"], template))
            )
            | "EmbedUnseenTexts"
            >> EmbedUnseenTexts(self._config, self._known_embeddings, self._update_part)
        )
        _ = embedded.failures | "CountEmbeddingFailures" >> beam.Map(
            counted, counter("embedding_failures")
        )
        with_embeddings = {
            "row": canonicals | "CanonicalByCluster" >> beam.Map(lambda r: (r["cluster_id"], r)),
            "embedding": embedded.embeddings,
        } | "JoinEmbeddings" >> beam.CoGroupByKey()
        tagged = (
            with_embeddings
            | "TagInputs" >> beam.FlatMap(_tag_input)
            | "TagPapers" >> TagPapers(self._taxonomy, self._config, self._prototype_cache)
            | "KeyTags" >> beam.Map(lambda t: (t[0], (t[1], t[2])))
        )
        joined = {
            "rows": rows | "KeyByCluster" >> beam.Map(lambda r: (r["cluster_id"], r)),
            "embedding": embedded.embeddings,
            "tags": tagged,
        }
        merges = names = None
        if self._semantic is not None:
            policy = self._semantic.canonical_policy
            candidates = with_embeddings | "MergeCandidates" >> beam.FlatMap(
                _merge_candidates, policy, self._semantic.vectors
            )
            merges = candidates | "RevisionMerges" >> RevisionMerges(
                self._semantic, self._update_part
            )
            joined["merge"] = (
                {
                    "merge": merges
                    | "KeyByMergedCluster" >> beam.Map(lambda kv: (kv[1].into, kv[1])),
                    "tags": tagged,
                }
                | "JoinMergedCanonical" >> beam.CoGroupByKey()
                | "MergedEnrichment" >> beam.FlatMap(_merged_enrichment)
            )
        clusters = joined | "JoinEnrichment" >> beam.CoGroupByKey()
        enriched = (
            clusters
            | "EnrichRows" >> beam.FlatMap(_enrich)
            | "CountEnrichedRows" >> beam.Map(counted, counter("rows_enriched"))
        )
        if self._semantic is not None:
            names = clusters | "NameRows" >> beam.FlatMap(_name_rows, self._semantic.vectors)
        return EnrichedPapers(enriched, merges, embedded.fresh, names)


def _tag_input(element) -> Iterator[tuple]:
    _, joined = element
    for row in joined["row"]:
        for embedding in joined["embedding"]:
            yield row["cluster_id"], embedding, row["title"], row["abstract"], row["code_urls"]


def _merge_candidates(element, policy: str, vectors: VectorLSH) -> Iterator:
    """Each embedded canonical as a semantic-merge candidate (no vector: no candidate)."""
    _, joined = element
    for row in joined["row"]:
        for embedding in joined["embedding"]:
            yield candidate(row, embedding, policy, vectors)


def _name_rows(element, vectors: VectorLSH) -> Iterator[dict[str, Any]]:
    """The ``paper_names`` rows of one lexical cluster: its canonical is a merge candidate if
    it has a vector, and holds the band keys of that vector (its own, not the vector of a
    cluster it is merged into)."""
    _, joined = element
    own = _first(joined["embedding"])
    keys = vector_keys([own], vectors)[0] if own is not None else frozenset()
    for row in joined["rows"]:
        candidate = bool(row["is_canonical"] and own is not None)
        yield names_row_of(
            row["record_id"], row["title"], row["abstract"], candidate, keys if candidate else ()
        )


def _merged_enrichment(element) -> Iterator[tuple[str, tuple[Merge, Any, tuple]]]:
    """(absorbed cluster_id, (merge, vector and tags of the merged canonical))."""
    _, joined = element
    tags = _first(joined["tags"])
    for merge in joined["merge"]:
        yield merge.cluster_id, (merge, merge.embedding, tags)


def _first(values) -> Any:
    return next(iter(values), None)


def _enrich(element) -> Iterator[dict[str, Any]]:
    _, joined = element
    embedding, tags = _first(joined["embedding"]), _first(joined["tags"])
    merge = _first(joined.get("merge", ()))
    if merge is not None:  # the cluster joins another: its rows take that one's id and vector
        merge, embedding, tags = merge
    tag_list, scores = tags if tags else ([], [])
    tag_scores = [{"tag": tag, "score": score} for tag, score in scores]
    for row in joined["rows"]:
        row = merged_row(row, merge) if merge is not None else row
        yield {**row, "embedding": embedding, "tags": tag_list, "tag_scores": tag_scores}
