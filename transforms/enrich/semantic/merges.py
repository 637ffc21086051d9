"""Merge lexical clusters that are versions of one paper (an "arXiv v2"), by embedding.

A revised abstract can share almost no word 3-shingles with its first version (Jaccard
0.01-0.06 on ``tests/data/revisions.jsonl``), so MinHash never links them. Their embeddings
stay close, but not closer than distinct papers on one topic: with all-MiniLM-L6-v2 the
revisions score cosine 0.833-0.915 (the invented ones and a retitled seed paper) while two
distinct seed papers reach 0.879 (`make bench`, section *semantic*). Cosine alone cannot separate them, so a merge needs two things:

1. a shared **name**: a coined term (``FlowPrune``, ``UPGD``, ``QM9``: camel case, or an
   acronym of >= 3 characters) that *both* texts use as a name, i.e. in the title or at least
   twice in the abstract; an identical title counts as a shared name too. A revision keeps
   naming its method; two papers on one topic share topic words and cite common baselines,
   but rarely both *name* the same thing;
2. **cosine >= threshold** between the two canonical embeddings (default 0.82, the midpoint
   of the measured margin among pairs that share a name: distinct seed papers <= 0.812, true
   revisions >= 0.833).

Shape (worst-case values per key in brackets)::

    canonical candidates ─ NameKeys ─ GroupByName [canonicals naming one term; <= 33 read]
        ─ VerifyBuckets (every pair of a bucket: shared name + cosine) ─ DistinctEdges
        ─ ConnectedComponents [degree of one canonical]
        ─ JoinComponentLabels [1 candidate + 1 label] ─ GroupComponents [one component]
        ─ SplitComponents (pure: merge_group)  -> (old cluster_id, Merge)

Blocking by name is exact for this rule (every pair the rule accepts shares a name, so it
meets in that name's bucket) and never all pairs: a bucket holds the canonicals naming one
term, and a term named by more than ``max_bucket`` canonicals (``GANs``, ``LLMs``) is not a
distinguishing name and is skipped (counter ``semantic/skipped_buckets``).

Components can chain (A ~ B, B ~ C, A far from C); :func:`merge_group` splits them as
:func:`transforms.dedup.clusters.assign_clusters` does, so every merged canonical is accepted by
the rule against the merged cluster's canonical (chosen among the lexical canonicals by the
run's canonical policy; its record_id is the merged cluster_id).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from transforms.enrich.semantic.rule import (
    Candidate,
    Merge,
    SemanticConfig,
    bucket_edges,
    combine_summaries,
    merge_group,
)
from transforms.graph.components import ConnectedComponents
from transforms.incremental.part import UpdatePartSource, load_part
from transforms.metrics import SEMANTIC_NAMESPACE, counter, distribution


class _VerifyBucket(beam.DoFn):
    """(name, candidates) -> accepted pairs (a, b) of the bucket; buckets over the cap are
    skipped (a term that many canonicals name does not identify one paper)."""

    def __init__(
        self, threshold: float, max_bucket: int, update_part: UpdatePartSource | None = None
    ) -> None:
        self._threshold = threshold
        self._max_bucket = max_bucket
        self._update_part = update_part
        self._skip_names: frozenset[str] = frozenset()
        self._buckets = counter("buckets", SEMANTIC_NAMESPACE)
        self._skipped = counter("skipped_buckets", SEMANTIC_NAMESPACE)
        self._accepted = counter("accepted_pairs", SEMANTIC_NAMESPACE)
        self._pairs = counter("verified_pairs", SEMANTIC_NAMESPACE)

    def setup(self) -> None:
        if self._update_part is not None:
            self._skip_names = load_part(self._update_part).skip_names

    def process(self, element: tuple[str, Iterable[Candidate]]) -> Iterator[tuple[str, str]]:
        name, members = element
        found = list(itertools.islice(members, self._max_bucket + 1))
        if len(found) < 2:
            return
        if len(found) > self._max_bucket or name in self._skip_names:
            self._skipped.inc()
            return
        self._buckets.inc()
        self._pairs.inc(len(found) * (len(found) - 1) // 2)
        for a, b, _ in bucket_edges(found, self._threshold):
            self._accepted.inc()
            yield a, b


def _name_keys(c: Candidate) -> Iterator[tuple[str, Candidate]]:
    for name in sorted(c.names):
        yield name, c


def _labelled(element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[tuple[str, Candidate]]:
    _, joined = element
    labels = list(joined["label"])
    if labels:
        for c in joined["candidate"]:
            yield labels[0], c


class _SplitComponent(beam.DoFn):
    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._merged = counter("merged_clusters", SEMANTIC_NAMESPACE)
        self._size = distribution("component_size", SEMANTIC_NAMESPACE)

    def process(self, element: tuple[str, Iterable[Candidate]]) -> Iterator[tuple[str, Merge]]:
        _, members = element
        members = list(members)
        self._size.update(len(members))
        for merge in merge_group(members, self._threshold):
            self._merged.inc()
            yield merge.cluster_id, merge


class RevisionMerges(beam.PTransform):
    """Candidates (one per lexical cluster with an embedding) -> (old cluster_id, Merge) for
    every cluster absorbed into another. Counters in namespace ``semantic``.

    ``update_part``: an update re-merges only part of the corpus (:mod:`transforms.incremental.
    part`); names that canonicals outside that part already hold more than ``max_bucket``
    times are skipped whatever their bucket holds here. The part, or the path of its file
    (read when the bucket verifier is set up).
    """

    def __init__(self, config: SemanticConfig, update_part: UpdatePartSource | None = None) -> None:
        super().__init__()
        self._config = config
        self._update_part = update_part

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        cfg = self._config
        labels = (
            candidates
            | "NameKeys" >> beam.FlatMap(_name_keys)
            | "GroupByName" >> beam.GroupByKey()
            | "VerifyBuckets"
            >> beam.ParDo(_VerifyBucket(cfg.threshold, cfg.max_bucket, self._update_part))
            | "DistinctEdges" >> beam.Distinct()
            | "ConnectedComponents" >> ConnectedComponents(rounds=cfg.component_rounds)
        )
        return (
            {
                "candidate": candidates | "KeyByCluster" >> beam.Map(lambda c: (c.cluster_id, c)),
                "label": labels,
            }
            | "JoinComponentLabels" >> beam.CoGroupByKey()
            | "Labelled" >> beam.FlatMap(_labelled)
            | "GroupComponents" >> beam.GroupByKey()
            | "SplitComponents" >> beam.ParDo(_SplitComponent(cfg.threshold))
        )


def _routed_summary(element) -> Iterator[tuple[str, dict[str, Any]]]:
    cluster_id, joined = element
    merges = list(joined["merge"])
    target = merges[0].into if merges else cluster_id
    for summary in joined["summary"]:
        yield target, summary


def _with_ids(cluster_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {"cluster_id": cluster_id, "canonical_record_id": cluster_id, **summary}


class MergeClusterSummaries(beam.PTransform):
    """(clusters-table rows, (old cluster_id, Merge)) -> clusters-table rows of the merged
    clustering: size and distinct texts add up, dates span all merged clusters."""

    def expand(self, pcolls) -> beam.PCollection:
        clusters, merges = pcolls
        return (
            {
                "summary": clusters | "KeyById" >> beam.Map(lambda s: (s["cluster_id"], s)),
                "merge": merges,
            }
            | "JoinMerges" >> beam.CoGroupByKey()
            | "RouteSummaries" >> beam.FlatMap(_routed_summary)
            | "CombineSummaries" >> beam.CombinePerKey(combine_summaries)
            | "WithIds" >> beam.MapTuple(_with_ids)
        )
