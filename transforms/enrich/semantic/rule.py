"""The revision-merge rule, as pure functions: when two lexical clusters' canonicals are
versions of one paper, and how a component of accepted pairs splits into merged clusters.

A merge needs a shared name (:mod:`.names`) and embedding cosine >= the threshold; see
:mod:`.merges` for the Beam stage and docs/design.md for the measured margin behind it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transforms.dedup.clusters import SEMANTIC, canonical_sort_key, check_policy, date_span
from transforms.enrich.semantic.names import paper_names
from transforms.records import Record

# Measured in `make bench` (section semantic): among pairs that share a name, distinct seed
# papers reach cosine 0.812 and true revisions start at 0.833; 0.82 is the midpoint.
DEFAULT_THRESHOLD = 0.82


DEFAULT_MAX_BUCKET = 32


@dataclass(frozen=True)
class SemanticConfig:
    """How lexical clusters are merged by embedding (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD
    canonical_policy: str = "earliest"
    max_bucket: int = DEFAULT_MAX_BUCKET
    component_rounds: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"semantic threshold must be in (0, 1], got {self.threshold!r}")
        check_policy(self.canonical_policy)
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
    :func:`transforms.dedup.clusters.assign_clusters`). One :class:`Merge` per absorbed cluster;
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
