"""New records that copy a text the corpus already holds, and join its cluster directly.

A new record whose text the corpus already holds, and which sorts after its text's (lexical)
canonical by the canonical policy, changes nothing but its own row and its cluster's size and
dates: in a full run it would join that cluster with exactly the role every other copy of the
text has. Such a record is written by the update's planner, not clustered again; a copy that
would take over as canonical (``--canonical_policy latest``) or whose cluster is in the
update's part anyway (:mod:`transforms.incremental.part`) goes through the pipeline like any
new text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from transforms.dedup.clusters import (
    EXACT,
    SEMANTIC,
    Assignment,
    canonical_sort_key,
    date_span,
    record_row,
)
from transforms.incremental.part import rows_where
from transforms.records import Record

# The records-table columns joined_copies reads (plus abstract_length for 'longest').
ROLE_COLUMNS = [
    "record_id",
    "content_hash",
    "cluster_id",
    "is_canonical",
    "duplicate_of",
    "similarity",
    "dup_kind",
    "digest_date",
    "source_file",
    "record_index",
]


@dataclass(frozen=True)
class JoinedCopy:
    """A new record that joins a known cluster as a copy of a text it already holds."""

    record: Record
    cluster_id: str
    duplicate_of: str
    similarity: float
    dup_kind: str
    template: str  # an old record of the same text: the row shares its vector and tags


def _lexical_role(row: Mapping[str, Any]) -> tuple[str, float | None, str | None]:
    """(lexical canonical, similarity to it, dup kind) that a new exact copy of ``row``'s
    text gets: the same as ``row`` has, or (row, 1.0, exact) if ``row`` is the canonical."""
    if row["is_canonical"] or row["dup_kind"] == SEMANTIC:
        return row["record_id"], 1.0, EXACT
    return row["duplicate_of"], row["similarity"], row["dup_kind"]


def _rank_record(row: Mapping[str, Any]) -> Record:
    """Enough of an old record for the canonical policies' sort keys."""
    return Record(
        record_id=row["record_id"],
        source_file=row["source_file"],
        record_index=row["record_index"],
        digest_date=row["digest_date"],
        title="",
        abstract="\0" * int(row.get("abstract_length") or 0),
        content_hash=row["content_hash"],
    )


def joined_copies(new: Sequence[Record], records: pa.Table, policy: str) -> list[JoinedCopy]:
    """The new records that join a known cluster directly (see the module docstring).

    ``records``: the previous version's :data:`ROLE_COLUMNS` (and ``abstract_length`` for
    the policy 'longest'). Every old record of one text has the same role (same cluster,
    same canonical, same similarity to it), so any one of them says where a new copy goes;
    it stays there exactly when it sorts after that canonical.
    """
    hashes = {r.content_hash for r in new}
    if not hashes or records.num_rows == 0:
        return []
    rows = rows_where(records, "content_hash", hashes).to_pylist()
    by_text: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["record_id"]):
        by_text.setdefault(row["content_hash"], row)
    roles = {text: _lexical_role(row) for text, row in by_text.items()}
    canonical_rows = rows_where(records, "record_id", {c for c, _, _ in roles.values()})
    rank = canonical_sort_key(policy)
    canonical_rank = {
        row["record_id"]: rank(_rank_record(row)) for row in canonical_rows.to_pylist()
    }
    joined = []
    for record in new:
        row = by_text.get(record.content_hash)
        if row is None:
            continue
        canonical, similarity, kind = roles[record.content_hash]
        if canonical not in canonical_rank or rank(record) <= canonical_rank[canonical]:
            continue  # it would take over as canonical: cluster it again
        joined.append(
            JoinedCopy(record, row["cluster_id"], canonical, similarity, kind, row["record_id"])
        )
    return joined


def joined_row(copy: JoinedCopy, template: Mapping[str, Any]) -> dict[str, Any]:
    """The records-table row of a joined copy; vector and tags are its cluster's (those of
    ``template``, an old row of the same cluster)."""
    assignment = Assignment(
        copy.record, copy.cluster_id, False, copy.duplicate_of, copy.similarity, copy.dup_kind
    )
    return {
        **record_row(assignment),
        "embedding": template.get("embedding"),
        "tags": template.get("tags"),
        "tag_scores": template.get("tag_scores"),
    }


def grown_cluster(row: Mapping[str, Any], dates: Sequence[dt.date | None]) -> dict[str, Any]:
    """A clusters-table row after ``len(dates)`` copies of texts it holds joined it."""
    first, last = date_span([row["first_digest_date"], row["last_digest_date"], *dates])
    return {
        **row,
        "size": row["size"] + len(dates),
        "first_digest_date": first,
        "last_digest_date": last,
    }
