"""Which part of an existing corpus an update must cluster again (pure: pyarrow and numpy).

Adding a day changes the clustering only where the new texts reach. A full run links texts
through LSH buckets (stars, verified, then connected components), splits each component
into clusters, then merges clusters whose canonicals share a *name* and are close by
embedding (:mod:`transforms.semantic`). :func:`affected_part` finds a set of old clusters
such that clustering *those* records together with the new ones gives exactly what a full
run over everything gives them, while every other cluster stays as it is:

* **LSH closure.** Every bucket that holds a text of the part holds only texts of the part
  (old texts sharing a band hash with a new text, then with those, ...). Candidate edges are
  formed inside buckets, so no edge leaves the part, and the edges inside it are those of
  the full run (a star depends on its whole bucket, which is in the part). Old components
  outside never meet a new text, so they, their clusters and canonicals are unchanged.
* **Whole clusters.** A touched text brings every record of its (final) cluster, and their
  texts bring their buckets, until nothing new comes in.
* **Known copies join directly.** A new record whose text the corpus already holds, and
  which sorts after its text's (lexical) canonical by the canonical policy, changes nothing
  but its own row and its cluster's size and dates: in a full run it would join that
  cluster with exactly the role every other copy of the text has (:func:`joined_copies`).
  Such a record is written by the update's planner, not clustered again; a copy that
  would take over as canonical (``--canonical_policy latest``) or whose cluster is in the
  part anyway goes through the pipeline like any new text.
* **Name closure** (with semantic merging). A canonical outside the part that names
  something a record of the part names is brought in with its cluster, unless more than
  ``max_bucket`` canonicals outside hold that name: then the full run skips the name's
  bucket whatever the part holds, and the update must skip it too (``skip_names``). Any
  record of the part might become a canonical, so all of their names count.

The part is usually small (the new day's papers and the clusters they join), but it is
exact, not a heuristic: ``tests/test_incremental.py`` checks updates against full runs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms.clusters import EXACT, SEMANTIC, Assignment, canonical_sort_key, record_row
from transforms.records import Record


@dataclass(frozen=True)
class Affected:
    """The old part an update clusters again; everything else is copied as it is.

    ``everything``: the previous version has no update index (it was written before the
    index existed), so all of it is clustered again.
    """

    cluster_ids: frozenset[str] = frozenset()
    record_ids: frozenset[str] = frozenset()
    content_hashes: frozenset[str] = frozenset()
    skip_names: frozenset[str] = frozenset()
    everything: bool = False
    # new records that join a known cluster directly (the pipeline skips them)
    joined: frozenset[str] = frozenset()
    new_records: int = -1  # records the plan read in the new dumps (-1: not planned)

    @classmethod
    def all(cls) -> Affected:
        return cls(everything=True)

    def sizes(self) -> dict[str, int]:
        """How big the part is (for the run summary)."""
        return {
            "clusters": len(self.cluster_ids),
            "records": len(self.record_ids),
            "texts": len(self.content_hashes),
            "skipped_names": len(self.skip_names),
            "joined_copies": len(self.joined),
            "new_records": self.new_records,
            "everything": int(self.everything),
        }

    def to_json(self) -> str:
        document = {
            f.name: sorted(v) if isinstance(v := getattr(self, f.name), frozenset) else v
            for f in fields(self)
        }
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str) -> Affected:
        document = json.loads(text)
        return cls(
            **{
                f.name: frozenset(document[f.name])
                if isinstance(document[f.name], list)
                else document[f.name]
                for f in fields(cls)
            }
        )


# The part itself, or the path of an update plan file holding it (read when a DoFn is set
# up: the update plans while the job graph is being built, see beam_jobs/carry.py).
AffectedSource = Affected | str


def resolve(source: AffectedSource) -> Affected:
    if isinstance(source, Affected):
        return source
    with FileSystems.open(source) as fh:
        return Affected.from_json(fh.read().decode("utf-8"))


@dataclass(frozen=True)
class PreviousIndex:
    """What an update reads of the previous version to plan: its records' ids, texts and
    clusters (``record_id``, ``content_hash``, ``cluster_id``), the band hashes of its texts
    (``lsh_bands``: one row per text), and, with semantic merging, ``paper_names`` with a
    ``candidate`` flag (the record was a merge candidate: a lexical canonical with a vector)."""

    records: pa.Table
    text_hashes: pa.Array  # content_hash of each row of ``bands``
    bands: np.ndarray  # texts x bands, uint64
    names: pa.Table | None = None


@dataclass(frozen=True)
class NewTexts:
    """The new records as the plan sees them: their texts, the band hashes of texts the
    index does not hold yet, and (semantic merging) each record's names."""

    content_hashes: Sequence[str]
    bands: Mapping[str, np.ndarray]
    names: Iterable[Collection[str]] = ()


def _value_set(values: Iterable[str]) -> pa.Array:
    return pa.array(sorted(values), pa.string())


def _rows_where(table: pa.Table, column: str, values: Collection[str]) -> pa.Table:
    return table.filter(pc.is_in(table.column(column), value_set=_value_set(values)))


def _strings(array: pa.Array | pa.ChunkedArray) -> set[str]:
    return set(pc.unique(array).to_pylist())


class _Buckets:
    """Which indexed texts share an LSH bucket with given texts."""

    def __init__(self, previous: PreviousIndex, new_bands: Mapping[str, np.ndarray]) -> None:
        self._hashes = previous.text_hashes
        self._bands = previous.bands
        self._new = new_bands

    def mates(self, texts: Collection[str]) -> set[str]:
        if self._bands.size == 0 or not texts:
            return set()
        rows = pc.is_in(self._hashes, value_set=_value_set(texts)).to_numpy(zero_copy_only=False)
        keys = [self._bands[rows]]
        keys += [self._new[t][None, :] for t in texts if t in self._new]
        wanted = np.concatenate(keys)
        shares = np.zeros(len(self._bands), dtype=bool)
        for band in range(self._bands.shape[1]):
            shares |= np.isin(self._bands[:, band], wanted[:, band])
        return set(self._hashes.filter(pa.array(shares)).to_pylist())


def affected_part(
    previous: PreviousIndex, new: NewTexts, max_bucket: int | None = None
) -> Affected:
    """The old clusters to cluster again with ``new`` (see the module docstring).

    ``max_bucket``: the semantic merge's bucket cap; None when there is no semantic merge
    (then names play no part).
    """
    records = previous.records
    buckets = _Buckets(previous, new.bands)
    texts: set[str] = set(new.content_hashes)
    clusters: set[str] = set()
    pending = set(texts)
    new_names = set().union(*(set(n) for n in new.names))
    while True:
        while pending:  # LSH closure, whole clusters
            mates = buckets.mates(pending)
            touched = _strings(_rows_where(records, "content_hash", pending | mates)["cluster_id"])
            fresh_clusters = touched - clusters
            clusters |= fresh_clusters
            members = _rows_where(records, "cluster_id", fresh_clusters)["content_hash"]
            pending = (mates | _strings(members)) - texts
            texts |= pending
        if max_bucket is None or previous.names is None:
            skip: set[str] = set()
            break
        part = _strings(_rows_where(records, "cluster_id", clusters)["record_id"])
        outside = _outside_holders(previous.names, part, new_names)
        extra = {
            record_id
            for holders in outside.values()
            if len(holders) <= max_bucket
            for record_id in holders
        }
        skip = {name for name, holders in outside.items() if len(holders) > max_bucket}
        extra_clusters = _strings(_rows_where(records, "record_id", extra)["cluster_id"]) - clusters
        if not extra_clusters:
            break
        clusters |= extra_clusters
        members = _rows_where(records, "cluster_id", extra_clusters)["content_hash"]
        pending = _strings(members) - texts
        texts |= pending
    part_records = _rows_where(records, "cluster_id", clusters)
    return Affected(
        cluster_ids=frozenset(clusters),
        record_ids=frozenset(part_records["record_id"].to_pylist()),
        content_hashes=frozenset(part_records["content_hash"].to_pylist()),
        skip_names=frozenset(skip),
    )


def _outside_holders(names: pa.Table, part: set[str], new_names: set[str]) -> dict[str, set[str]]:
    """For every name a record of the part (or a new record) holds: the merge candidates
    outside the part that hold it too (names no candidate outside holds are left out)."""
    inside = _rows_where(names, "record_id", part)
    wanted = new_names | _strings(pc.list_flatten(inside["names"]))
    if not wanted:
        return {}
    candidates = names.filter(names["candidate"])
    flat = pc.list_flatten(candidates["names"])
    owners = pc.take(candidates["record_id"], pc.list_parent_indices(candidates["names"]))
    hit = pc.is_in(flat, value_set=_value_set(wanted))
    holders: dict[str, set[str]] = {}
    for name, record_id in zip(
        flat.filter(hit).to_pylist(), owners.filter(hit).to_pylist(), strict=True
    ):
        if record_id not in part:
            holders.setdefault(name, set()).add(record_id)
    return holders


# --------------------------------------------------------------- copies of known texts

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
    rows = _rows_where(records, "content_hash", hashes).to_pylist()
    by_text: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["record_id"]):
        by_text.setdefault(row["content_hash"], row)
    roles = {text: _lexical_role(row) for text, row in by_text.items()}
    canonical_rows = _rows_where(records, "record_id", {c for c, _, _ in roles.values()})
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
    known = [d for d in (row["first_digest_date"], row["last_digest_date"], *dates) if d]
    return {
        **row,
        "size": row["size"] + len(dates),
        "first_digest_date": min(known) if known else None,
        "last_digest_date": max(known) if known else None,
    }
