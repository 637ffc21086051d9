"""The revision-merge rule, as pure functions: when two lexical clusters' canonicals are
versions of one paper, and how a component of accepted pairs splits into merged clusters.

The rule is a list of tiers, checked in order; the first that accepts a pair names the merge:

=========  ==========  ================================================================
tier       cosine >=   evidence the pair must share (:mod:`.evidence`)
=========  ==========  ================================================================
``cosine`` threshold   none (default 0.90: above every distinct pair measured)
``title``  0.86        ``title``: one title is the other, or a run of it
``words``  0.80        ``words``: content-word Jaccard >= 0.35
``named``  0.83        ``name``, ``link`` or ``lead``
=========  ==========  ================================================================

Bars come from the margin table of ``make bench`` (section *semantic*): the highest cosine of
two distinct papers having the evidence, against the lowest of true revisions having it.
See :mod:`.merges` for the Beam stage.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transforms.dedup.clusters import SEMANTIC, canonical_sort_key, check_policy, date_span
from transforms.enrich.semantic.evidence import PaperView, blocking_keys, evidence, paper_view
from transforms.enrich.semantic.vectors import VectorLSH, blocking
from transforms.records import Record

# The cosine-alone bar: distinct papers reach 0.879 (seed dumps) and 0.878 (generated) in
# `make bench` (section semantic); revisions far from their v1 are left to the evidence tiers.
DEFAULT_THRESHOLD = 0.90


@dataclass(frozen=True)
class Tier:
    """Accept a pair with cosine >= ``bar`` that shares any of the evidence ``kinds``."""

    name: str
    bar: float
    kinds: frozenset[str]

    def accepts(self, similarity: float, found: frozenset[str]) -> bool:
        return similarity >= self.bar and bool(found & self.kinds)


# The evidence tiers below the cosine-alone bar (see the module docstring).
EVIDENCE_TIERS: tuple[Tier, ...] = (
    Tier("title", 0.86, frozenset({"title"})),
    Tier("words", 0.80, frozenset({"words"})),
    Tier("named", 0.83, frozenset({"name", "link", "lead"})),
)

DEFAULT_MAX_BUCKET = 32


@dataclass(frozen=True)
class SemanticConfig:
    """How lexical clusters are merged by embedding (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD  # the cosine-alone tier's bar
    canonical_policy: str = "earliest"
    max_bucket: int = DEFAULT_MAX_BUCKET
    component_rounds: int = 8
    # band keys of the embeddings, blocking pairs that share no name (vectors.py); off by
    # default: their candidate pairs grow too fast with the corpus (docs/design.md)
    vectors: VectorLSH = VectorLSH(bands=0)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"semantic threshold must be in (0, 1], got {self.threshold!r}")
        check_policy(self.canonical_policy)
        if self.max_bucket < 2:
            raise ValueError(f"max_bucket must be >= 2, got {self.max_bucket}")
        if self.component_rounds < 0:
            raise ValueError(f"component_rounds must be >= 0, got {self.component_rounds}")

    def tier(self, similarity: float, found: frozenset[str]) -> str | None:
        """The first tier that accepts a pair with this cosine and evidence, or None."""
        if similarity >= self.threshold:
            return "cosine"
        for tier in EVIDENCE_TIERS:
            if tier.accepts(similarity, found):
                return tier.name
        return None

    @property
    def lowest_bar(self) -> float:
        return min(self.threshold, *(t.bar for t in EVIDENCE_TIERS))

    def settings(self) -> dict[str, Any]:
        """What of the rule shapes the result (stored with an output; an update must match)."""
        settings: dict[str, Any] = {
            "threshold": self.threshold,
            "max_bucket": self.max_bucket,
            "tiers": [[t.name, t.bar, sorted(t.kinds)] for t in EVIDENCE_TIERS],
        }
        if self.vectors.enabled:  # absent when off: outputs from before vector keys match
            settings["vectors"] = self.vectors.settings()
        return settings


@dataclass(frozen=True, eq=False)
class Candidate:
    """A lexical cluster's canonical as the merge sees it."""

    cluster_id: str
    rank: tuple[Any, ...]  # canonical-policy sort key of the canonical record
    names: frozenset[str]  # blocking keys (evidence.blocking_keys)
    embedding: np.ndarray = field(repr=False)
    view: PaperView | None = field(default=None, repr=False)
    sketch: int | None = field(default=None, repr=False)  # vectors.sketch, with vector keys

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


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (the pipeline's are unit already; 0.0 for a zero vector)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0.0 else 0.0


def pair_evidence(a: Candidate, b: Candidate) -> frozenset[str]:
    if a.view is None or b.view is None:
        return frozenset()
    return evidence(a.view, b.view)


def accepted_tier(a: Candidate, b: Candidate, config: SemanticConfig) -> tuple[str, float] | None:
    """(tier, cosine) if the rule merges ``a`` and ``b``, else None. Evidence is only
    computed for a pair below the cosine-alone bar that could pass an evidence tier."""
    similarity = cosine(a.embedding, b.embedding)
    if similarity < config.lowest_bar:
        return None
    found = frozenset() if similarity >= config.threshold else pair_evidence(a, b)
    tier = config.tier(similarity, found)
    return None if tier is None else (tier, similarity)


def accepted_similarity(a: Candidate, b: Candidate, config: SemanticConfig) -> float | None:
    """The cosine of ``a`` and ``b`` if the rule merges them, else None."""
    accepted = accepted_tier(a, b, config)
    return None if accepted is None else accepted[1]


def bucket_edges(
    members: Sequence[Candidate], config: SemanticConfig
) -> list[tuple[str, str, str, float]]:
    """Every accepted pair (a, b, tier, cosine), a < b by cluster_id, of one bucket."""
    ordered = sorted(members, key=lambda c: c.cluster_id)
    edges = []
    for a, b in itertools.combinations(ordered, 2):
        accepted = accepted_tier(a, b, config)
        if accepted is not None:
            edges.append((a.cluster_id, b.cluster_id, *accepted))
    return edges


def merge_group(members: Iterable[Candidate], config: SemanticConfig) -> list[Merge]:
    """Split one connected component of accepted pairs into merged clusters.

    The first candidate by canonical policy becomes the merged canonical and takes every
    candidate the rule accepts against it; the rest repeat (chains are split, as in
    :func:`transforms.dedup.clusters.assign_clusters`). One :class:`Merge` per absorbed cluster;
    candidates left alone are not returned. The order of ``members`` does not matter.
    """
    remaining = sorted(members, key=lambda c: c.order)
    merges: list[Merge] = []
    while remaining:
        canonical, rest = remaining[0], []
        for member in remaining[1:]:
            similarity = accepted_similarity(canonical, member, config)
            if similarity is None:
                rest.append(member)
            else:
                merges.append(
                    Merge(member.cluster_id, canonical.cluster_id, similarity, canonical.embedding)
                )
        remaining = rest
    return merges


def candidate(
    row: Mapping[str, Any], embedding: np.ndarray, policy: str, vectors: VectorLSH | None = None
) -> Candidate:
    """The candidate of a canonical records-table row (its names, rank and embedding); its
    blocking keys are those of its text plus, with ``vectors``, the band keys of its vector."""
    record = Record.of_row(row)
    view = paper_view(row["title"], row["abstract"])
    embedding = np.asarray(embedding, dtype=np.float32)
    names = blocking_keys(row["title"], row["abstract"], view)
    signs = None
    if vectors is not None and vectors.enabled:
        banded, signs = blocking(embedding, vectors)
        names |= banded
    return Candidate(
        cluster_id=row["cluster_id"],
        rank=canonical_sort_key(policy)(record),
        names=names,
        embedding=embedding,
        view=view,
        sketch=signs,
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


def combine_summaries(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One clusters-table row from the rows of clusters merged into one (ids set by the
    caller). Clusters never share a content_hash, so distinct texts add up."""
    summaries = list(summaries)
    first, last = date_span(
        [s["first_digest_date"] for s in summaries] + [s["last_digest_date"] for s in summaries]
    )
    return {
        "size": sum(s["size"] for s in summaries),
        "distinct_texts": sum(s["distinct_texts"] for s in summaries),
        "first_digest_date": first,
        "last_digest_date": last,
    }
