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
:func:`transforms.clusters.assign_clusters` does, so every merged canonical is accepted by
the rule against the merged cluster's canonical (chosen among the lexical canonicals by the
run's canonical policy; its record_id is the merged cluster_id).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from transforms.affected import AffectedSource, resolve
from transforms.clusters import SEMANTIC, canonical_sort_key
from transforms.components import ConnectedComponents
from transforms.records import Record
from transforms.text import tokens

NAMESPACE = "semantic"

# Measured in `make bench` (section semantic): among pairs that share a name, distinct seed
# papers reach cosine 0.812 and true revisions start at 0.833; 0.82 is the midpoint.
DEFAULT_THRESHOLD = 0.82
DEFAULT_MAX_BUCKET = 32

_TOKEN = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")
TITLE_NAME_PREFIX = "title:"


@dataclass(frozen=True)
class SemanticConfig:
    """How lexical clusters are merged by embedding (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD
    canonical_policy: str = "earliest"
    max_bucket: int = DEFAULT_MAX_BUCKET
    component_rounds: int = 8
    # An update re-merges only part of the corpus (transforms.affected): names that
    # canonicals outside that part already hold more than max_bucket times are skipped
    # whatever their bucket holds here. The part, or the path of its plan file.
    update_part: AffectedSource | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"semantic threshold must be in (0, 1], got {self.threshold!r}")
        canonical_sort_key(self.canonical_policy)  # raises on an unknown policy
        if self.max_bucket < 2:
            raise ValueError(f"max_bucket must be >= 2, got {self.max_bucket}")
        if self.component_rounds < 0:
            raise ValueError(f"component_rounds must be >= 0, got {self.component_rounds}")


@dataclass(frozen=True, eq=False)
class Candidate:
    """A lexical cluster's canonical as the merge sees it."""

    cluster_id: str
    rank: tuple[Any, ...]  # canonical-policy sort key of the canonical record
    names: frozenset[str]
    embedding: np.ndarray = field(repr=False)

    @property
    def order(self) -> tuple[tuple[Any, ...], str]:
        return (self.rank, self.cluster_id)


@dataclass(frozen=True)
class Merge:
    """Lexical cluster ``cluster_id`` joins cluster ``into`` (its canonical's record_id);
    ``similarity`` is the cosine of the two canonicals' embeddings. ``embedding`` is the
    merged canonical's vector, carried along so its rows need not join the vectors again."""

    cluster_id: str
    into: str
    similarity: float
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


# ----------------------------------------------------------------------------- pure rule


def _coined_part(part: str) -> bool:
    if len(part) < 3:
        return False
    has_lower = any(c.islower() for c in part)
    if has_lower:
        return any(c.isupper() for c in part[1:])  # camel case: FlowPrune, rMD17, DeiT
    return sum(c.isupper() for c in part) >= 2  # acronym: UPGD, QM9, LDM3D (not 3D, 128)


def is_coined(token: str) -> bool:
    """A term someone made up: camel case or an acronym, in any hyphen-separated part
    (``PointVQA``, ``GPT-4``), not a capitalized word (``Training-Free``, ``Text-to-3D``)."""
    return any(_coined_part(part) for part in token.split("-"))


def paper_names(title: str, abstract: str) -> frozenset[str]:
    """What a paper names, case-folded: coined terms of its title, coined terms used at
    least twice in its abstract, and its whole title (``title:`` + title tokens)."""
    in_title = {t.casefold() for t in _TOKEN.findall(title) if is_coined(t)}
    in_abstract = Counter(t.casefold() for t in _TOKEN.findall(abstract) if is_coined(t))
    repeated = {t for t, n in in_abstract.items() if n >= 2}
    names = in_title | repeated
    title_tokens = tokens(title)
    if title_tokens:
        names.add(TITLE_NAME_PREFIX + " ".join(title_tokens))
    return frozenset(names)


def names_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``paper_names`` row of an enriched records-table row: what an update blocks new
    canonicals against without reading the texts of the corpus again."""
    was_canonical = row["is_canonical"] or row["dup_kind"] == SEMANTIC
    candidate = bool(was_canonical and row["embedding"] is not None)
    return names_row_of(row["record_id"], row["title"], row["abstract"], candidate)


def names_row_of(record_id: str, title: str, abstract: str, candidate: bool) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "names": sorted(paper_names(title, abstract)),
        "candidate": candidate,
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (the pipeline's are unit already; 0.0 for a zero vector)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0.0 else 0.0


def accepted_similarity(a: Candidate, b: Candidate, threshold: float) -> float | None:
    """The cosine of ``a`` and ``b`` if the rule merges them (a shared name and cosine >=
    ``threshold``), else None."""
    if not a.names & b.names:
        return None
    similarity = cosine(a.embedding, b.embedding)
    return similarity if similarity >= threshold else None


def bucket_edges(members: Sequence[Candidate], threshold: float) -> list[tuple[str, str, float]]:
    """Every accepted pair (a, b, cosine), a < b by cluster_id, of one name bucket."""
    ordered = sorted(members, key=lambda c: c.cluster_id)
    edges = []
    for a, b in itertools.combinations(ordered, 2):
        similarity = accepted_similarity(a, b, threshold)
        if similarity is not None:
            edges.append((a.cluster_id, b.cluster_id, similarity))
    return edges


def merge_group(members: Iterable[Candidate], threshold: float) -> list[Merge]:
    """Split one connected component of accepted pairs into merged clusters.

    The first candidate by canonical policy becomes the merged canonical and takes every
    candidate the rule accepts against it; the rest repeat (chains are split, as in
    :func:`transforms.clusters.assign_clusters`). One :class:`Merge` per absorbed cluster;
    candidates left alone are not returned. The order of ``members`` does not matter.
    """
    remaining = sorted(members, key=lambda c: c.order)
    merges: list[Merge] = []
    while remaining:
        canonical, rest = remaining[0], []
        for member in remaining[1:]:
            similarity = accepted_similarity(canonical, member, threshold)
            if similarity is None:
                rest.append(member)
            else:
                merges.append(
                    Merge(member.cluster_id, canonical.cluster_id, similarity, canonical.embedding)
                )
        remaining = rest
    return merges


def candidate(row: Mapping[str, Any], embedding: np.ndarray, policy: str) -> Candidate:
    """The candidate of a canonical records-table row (its names, rank and embedding)."""
    record = Record.of_row(row)
    return Candidate(
        cluster_id=row["cluster_id"],
        rank=canonical_sort_key(policy)(record),
        names=paper_names(row["title"], row["abstract"]),
        embedding=np.asarray(embedding, dtype=np.float32),
    )


def merged_row(row: dict[str, Any], merge: Merge) -> dict[str, Any]:
    """A records-table row of an absorbed cluster, moved into the merged cluster.

    The former canonical becomes a duplicate of the merged canonical (``dup_kind``
    'semantic', ``similarity`` the cosine); its former duplicates only change cluster and
    keep ``duplicate_of``/``similarity``/``dup_kind`` towards the record they matched.
    """
    if row["is_canonical"]:
        return {
            **row,
            "cluster_id": merge.into,
            "is_canonical": False,
            "duplicate_of": merge.into,
            "similarity": merge.similarity,
            "dup_kind": SEMANTIC,
        }
    return {**row, "cluster_id": merge.into}


def _earliest(dates: Iterable[dt.date | None]) -> dt.date | None:
    known = [d for d in dates if d is not None]
    return min(known) if known else None


def _latest(dates: Iterable[dt.date | None]) -> dt.date | None:
    known = [d for d in dates if d is not None]
    return max(known) if known else None


def combine_summaries(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One clusters-table row from the rows of clusters merged into one (ids set by the
    caller). Clusters never share a content_hash, so distinct texts add up."""
    summaries = list(summaries)
    return {
        "size": sum(s["size"] for s in summaries),
        "distinct_texts": sum(s["distinct_texts"] for s in summaries),
        "first_digest_date": _earliest(s["first_digest_date"] for s in summaries),
        "last_digest_date": _latest(s["last_digest_date"] for s in summaries),
    }


# ------------------------------------------------------------------------------------ Beam


class _VerifyBucket(beam.DoFn):
    """(name, candidates) -> accepted pairs (a, b) of the bucket; buckets over the cap are
    skipped (a term that many canonicals name does not identify one paper)."""

    def __init__(
        self, threshold: float, max_bucket: int, update_part: AffectedSource | None = None
    ) -> None:
        self._threshold = threshold
        self._max_bucket = max_bucket
        self._update_part = update_part
        self._skip_names: frozenset[str] = frozenset()
        self._buckets = Metrics.counter(NAMESPACE, "buckets")
        self._skipped = Metrics.counter(NAMESPACE, "skipped_buckets")
        self._accepted = Metrics.counter(NAMESPACE, "accepted_pairs")
        self._pairs = Metrics.counter(NAMESPACE, "verified_pairs")

    def setup(self) -> None:
        if self._update_part is not None:
            self._skip_names = resolve(self._update_part).skip_names

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
        self._merged = Metrics.counter(NAMESPACE, "merged_clusters")
        self._size = Metrics.distribution(NAMESPACE, "component_size")

    def process(self, element: tuple[str, Iterable[Candidate]]) -> Iterator[tuple[str, Merge]]:
        _, members = element
        members = list(members)
        self._size.update(len(members))
        for merge in merge_group(members, self._threshold):
            self._merged.inc()
            yield merge.cluster_id, merge


class RevisionMerges(beam.PTransform):
    """Candidates (one per lexical cluster with an embedding) -> (old cluster_id, Merge) for
    every cluster absorbed into another. Counters in namespace ``semantic``."""

    def __init__(self, config: SemanticConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        cfg = self._config
        labels = (
            candidates
            | "NameKeys" >> beam.FlatMap(_name_keys)
            | "GroupByName" >> beam.GroupByKey()
            | "VerifyBuckets"
            >> beam.ParDo(_VerifyBucket(cfg.threshold, cfg.max_bucket, cfg.update_part))
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
