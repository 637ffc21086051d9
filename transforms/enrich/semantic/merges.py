"""Merge lexical clusters that are versions of one paper (an "arXiv v2"), by embedding.

A revised abstract can share almost no word 3-shingles with its first version, so MinHash
never links them. Their embeddings stay close, but not always closer than two distinct
papers on one topic (all-MiniLM-L6-v2: distinct seed papers reach cosine 0.879, a moderately
reworded v2 can score 0.85). So a pair of lexical canonicals merges when the tiered rule of
:mod:`.rule` accepts it: cosine alone above a high bar, or a lower bar when the pair also
shares evidence (:mod:`.evidence`: a coined name, one title inside the other, the same code
link or first sentence, many content words).

Shape (worst-case values per key in brackets)::

    canonical candidates ─ BlockingKeys (coined names; hashes of title runs, first
        sentence, code links; band keys of the vector) ─ GroupByKey [ids holding one
        key; <= max_bucket + 1 read]
        ─ BucketPairs (every pair of ids of a bucket) ─ DistinctPairs
        ─ JoinFirst [candidate a + ids b it pairs with] ─ JoinSecond [candidate b + the
          candidates a paired with it] ─ VerifyPairs (the tiered rule)
        ─ ConnectedComponents [degree of one canonical]
        ─ JoinComponentLabels [1 candidate + 1 label] ─ GroupComponents [one component]
        ─ SplitComponents (pure: merge_group)  -> (old cluster_id, Merge)

Only ids travel through the buckets; a candidate (vector, view) is shipped once per distinct
pair it is in. Keys come from the text (:mod:`.evidence`) and from the canonical's embedding
(:mod:`.vectors`: random-hyperplane band keys, 128 per canonical by default), so a revision
that rewords its title and coins no name still meets its first version in a bucket of its
vector. Blocking is by exact keys, so it is never all pairs; an update finds the part of the
corpus a new canonical can reach from the stored keys (:mod:`transforms.incremental.part`).
A key held by more than ``max_bucket`` canonicals (``GANs``, "for large language models",
a band code of a crowded region of the embedding space) does not identify one paper and its
bucket is skipped (counter ``semantic/skipped_buckets``); a pair is lost only if every key
it shares is skipped (docs/benchmarks.md, section *semantic*, gives recall per kind of
revision and the bucket sizes to expect).

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

from transforms.enrich.semantic.evidence import title_run_keys
from transforms.enrich.semantic.rule import (
    EVIDENCE_TIERS,
    Candidate,
    Merge,
    SemanticConfig,
    accepted_tier,
    combine_summaries,
    merge_group,
)
from transforms.enrich.semantic.vectors import (
    VectorLSH,
    is_vector_key,
    sketch_bits,
    sketch_cosine,
    sketch_floor,
)
from transforms.graph.components import ConnectedComponents
from transforms.incremental.part import UpdatePartSource, load_part
from transforms.metrics import SEMANTIC_NAMESPACE, counter, distribution


class _BucketPairs(beam.DoFn):
    """(key, cluster ids) -> every pair (a, b), a < b, of the bucket; buckets over the cap are
    skipped (a key that many canonicals hold does not identify one paper). In a bucket of a
    vector key, a pair whose sketches put it clearly below the rule's lowest bar is dropped
    here (counter ``sketch_dropped_pairs``): unrelated papers of one field share band keys
    often, and verifying each such pair would ship two candidates."""

    def __init__(
        self,
        max_bucket: int,
        update_part: UpdatePartSource | None = None,
        vectors: VectorLSH | None = None,
        lowest_bar: float = 0.0,
    ) -> None:
        self._max_bucket = max_bucket
        self._sketch_bits = sketch_bits(vectors) if vectors is not None and vectors.enabled else 0
        self._floor = sketch_floor(lowest_bar, self._sketch_bits) if self._sketch_bits else -1.0
        self._dropped = counter("sketch_dropped_pairs", SEMANTIC_NAMESPACE)
        self._update_part = update_part
        self._skip_names: frozenset[str] = frozenset()
        self._buckets = counter("buckets", SEMANTIC_NAMESPACE)
        self._skipped = counter("skipped_buckets", SEMANTIC_NAMESPACE)

    def setup(self) -> None:
        if self._update_part is not None:
            self._skip_names = load_part(self._update_part).skip_names

    def process(
        self, element: tuple[str, Iterable[tuple[str, bool, int | None]]]
    ) -> Iterator[tuple[str, str]]:
        key, members = element
        found = list(itertools.islice(members, self._max_bucket + 1))
        if len(found) < 2:
            return
        if len(found) > self._max_bucket or key in self._skip_names:
            self._skipped.inc()
            return
        self._buckets.inc()
        # A title-run bucket pairs a whole title with the titles holding it; two titles that
        # only share a run are no evidence (every other kind of key holds for all members).
        for (a, whole_a, sketch_a), (b, whole_b, sketch_b) in itertools.combinations(
            sorted(found), 2
        ):
            if not (whole_a or whole_b):
                continue
            if (
                sketch_a is not None
                and sketch_b is not None
                and sketch_cosine(sketch_a, sketch_b, self._sketch_bits) < self._floor
            ):
                self._dropped.inc()
                continue
            yield a, b


def _with_first(
    element: tuple[str, Mapping[str, Iterable[Any]]],
) -> Iterator[tuple[str, Candidate]]:
    """(a, {candidate: [a's], second: [b, ...]}) -> (b, candidate a) for each pair (a, b)."""
    _, joined = element
    for first in joined["candidate"]:
        for second in joined["second"]:
            yield second, first


class _VerifyPairs(beam.DoFn):
    """(b, {candidate: [b's], first: [candidate a, ...]}) -> the pairs (a, b) the rule accepts."""

    def __init__(self, config: SemanticConfig) -> None:
        self._config = config
        self._pairs = counter("verified_pairs", SEMANTIC_NAMESPACE)
        self._accepted = counter("accepted_pairs", SEMANTIC_NAMESPACE)
        self._tiers = {
            tier: counter(f"accepted_pairs_{tier}", SEMANTIC_NAMESPACE)
            for tier in ("cosine", *(t.name for t in EVIDENCE_TIERS))
        }

    def process(
        self, element: tuple[str, Mapping[str, Iterable[Any]]]
    ) -> Iterator[tuple[str, str]]:
        _, joined = element
        for second in joined["candidate"]:
            for first in joined["first"]:
                self._pairs.inc()
                accepted = accepted_tier(first, second, self._config)
                if accepted is not None:
                    self._accepted.inc()
                    self._tiers[accepted[0]].inc()
                    yield first.cluster_id, second.cluster_id


def _blocking_keys(c: Candidate) -> Iterator[tuple[str, tuple[str, bool, int | None]]]:
    """(key, (cluster id, whether the key pairs with every holder, the vector's sketch for a
    vector key)): all keys pair with every holder but the runs of the candidate's title that
    are not its whole title."""
    runs = title_run_keys(c.view) if c.view is not None else {}
    for key in sorted(c.names):
        signs = c.sketch if is_vector_key(key) else None
        yield key, (c.cluster_id, not runs.get(key, False), signs)


def _labelled(element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[tuple[str, Candidate]]:
    _, joined = element
    labels = list(joined["label"])
    if labels:
        for c in joined["candidate"]:
            yield labels[0], c


class _SplitComponent(beam.DoFn):
    def __init__(self, config: SemanticConfig) -> None:
        self._config = config
        self._merged = counter("merged_clusters", SEMANTIC_NAMESPACE)
        self._size = distribution("component_size", SEMANTIC_NAMESPACE)

    def process(self, element: tuple[str, Iterable[Candidate]]) -> Iterator[tuple[str, Merge]]:
        _, members = element
        members = list(members)
        self._size.update(len(members))
        for merge in merge_group(members, self._config):
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
        by_id = candidates | "KeyByCluster" >> beam.Map(lambda c: (c.cluster_id, c))
        pairs = (
            candidates
            | "BlockingKeys" >> beam.FlatMap(_blocking_keys)
            | "GroupByKey" >> beam.GroupByKey()
            | "BucketPairs"
            >> beam.ParDo(
                _BucketPairs(cfg.max_bucket, self._update_part, cfg.vectors, cfg.lowest_bar)
            )
            | "DistinctPairs" >> beam.Distinct()
        )
        with_first = (
            {"candidate": by_id, "second": pairs}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "WithFirst" >> beam.FlatMap(_with_first)
        )
        labels = (
            {"candidate": by_id, "first": with_first}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "VerifyPairs" >> beam.ParDo(_VerifyPairs(cfg))
            | "ConnectedComponents" >> ConnectedComponents(rounds=cfg.component_rounds)
        )
        return (
            {"candidate": by_id, "label": labels}
            | "JoinComponentLabels" >> beam.CoGroupByKey()
            | "Labelled" >> beam.FlatMap(_labelled)
            | "GroupComponents" >> beam.GroupByKey()
            | "SplitComponents" >> beam.ParDo(_SplitComponent(cfg))
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
