"""Turn a group of records that are copies of one paper into clusters with canonicals.

Pure functions; :mod:`transforms.dedup.duplicates` calls them once per candidate group.

A candidate group is what exact hashing (same ``content_hash``) or near-duplicate linking
(connected components of similar texts) put together. Components can *chain*
(A~B, B~C, A far from C), so a group is split here: the canonical (first by policy) takes
every member similar enough to *it*; the rest form the next cluster, and so on. Every
member therefore ends up at least ``threshold``-similar to its own canonical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from transforms.records import Record

SimilarityFn = Callable[[str, str], float]

EXACT = "exact"
NEAR = "near"
SEMANTIC = (
    "semantic"  # a former canonical that a semantic merge moved (transforms.enrich.semantic.merges)
)


def _date_key(record: Record, newest_first: bool = False) -> tuple[bool, int]:
    if record.digest_date is None:
        return (True, 0)  # unknown dates sort after every known one
    ordinal = record.digest_date.toordinal()
    return (False, -ordinal if newest_first else ordinal)


CANONICAL_POLICIES: dict[str, Callable[[Record], tuple[Any, ...]]] = {
    # earliest digest_date, then source_file, then record_index
    "earliest": lambda r: (*_date_key(r), r.source_file, r.record_index),
    "latest": lambda r: (*_date_key(r, newest_first=True), r.source_file, r.record_index),
    # the most complete text (longest abstract), ties broken as 'earliest'
    "longest": lambda r: (-len(r.abstract), *_date_key(r), r.source_file, r.record_index),
}


def check_policy(policy: str) -> str:
    """``policy`` if it names a canonical policy, else a ValueError listing them."""
    if policy not in CANONICAL_POLICIES:
        known = ", ".join(sorted(CANONICAL_POLICIES))
        raise ValueError(f"unknown canonical policy {policy!r}; choose one of: {known}")
    return policy


def canonical_sort_key(policy: str) -> Callable[[Record], tuple[Any, ...]]:
    return CANONICAL_POLICIES[check_policy(policy)]


def date_span(dates: Iterable[dt.date | None]) -> tuple[dt.date | None, dt.date | None]:
    """(earliest, latest) of the known dates, (None, None) if none is known."""
    known = [d for d in dates if d is not None]
    return (min(known), max(known)) if known else (None, None)


@dataclass(frozen=True)
class Assignment:
    """A record with its place in the clustering."""

    record: Record
    cluster_id: str
    is_canonical: bool
    duplicate_of: str | None = None
    similarity: float | None = None
    dup_kind: str | None = None


def assign_clusters(
    members: Iterable[Record],
    policy: str = "earliest",
    similarity: SimilarityFn | None = None,
    threshold: float = 1.0,
) -> list[Assignment]:
    """Split one candidate group into clusters, each with exactly one canonical.

    ``similarity(content_hash_a, content_hash_b)`` scores two distinct texts; without it only
    exact copies (equal ``content_hash``) join a canonical. Deterministic: the order of
    ``members`` does not matter.
    """
    remaining = sorted(members, key=canonical_sort_key(policy))
    assignments: list[Assignment] = []
    while remaining:
        canonical, rest = remaining[0], []
        assignments.append(Assignment(canonical, canonical.record_id, True))
        scores: dict[str, float] = {}
        for member in remaining[1:]:
            if member.content_hash == canonical.content_hash:
                assignments.append(
                    Assignment(member, canonical.record_id, False, canonical.record_id, 1.0, EXACT)
                )
                continue
            if similarity is not None and member.content_hash not in scores:
                scores[member.content_hash] = similarity(
                    canonical.content_hash, member.content_hash
                )
            score = scores.get(member.content_hash, 0.0)
            if score >= threshold:
                assignments.append(
                    Assignment(member, canonical.record_id, False, canonical.record_id, score, NEAR)
                )
            else:
                rest.append(member)
        remaining = rest
    return assignments


def cluster_summaries(assignments: Iterable[Assignment]) -> list[dict[str, Any]]:
    """One row per cluster (the ``clusters`` table) from the assignments of a group."""
    by_cluster: dict[str, list[Record]] = {}
    for a in assignments:
        by_cluster.setdefault(a.cluster_id, []).append(a.record)
    rows = []
    for cluster_id, records in sorted(by_cluster.items()):
        first, last = date_span(r.digest_date for r in records)
        rows.append(
            {
                "cluster_id": cluster_id,
                "canonical_record_id": cluster_id,
                "size": len(records),
                "distinct_texts": len({r.content_hash for r in records}),
                "first_digest_date": first,
                "last_digest_date": last,
            }
        )
    return rows


def record_row(a: Assignment) -> dict[str, Any]:
    """The ``records`` table row of an assignment (column names from transforms.schema)."""
    r = a.record
    return {
        "record_id": r.record_id,
        "source_file": r.source_file,
        "record_index": r.record_index,
        "digest_date": r.digest_date,
        "title": r.title,
        "abstract": r.abstract,
        "content_hash": r.content_hash,
        "code_urls": list(r.code_urls),
        "cluster_id": a.cluster_id,
        "is_canonical": a.is_canonical,
        "duplicate_of": a.duplicate_of,
        "similarity": a.similarity,
        "dup_kind": a.dup_kind,
    }
