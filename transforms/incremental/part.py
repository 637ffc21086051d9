"""Which part of an existing corpus an update must cluster again (pure: pyarrow and numpy).

Adding a day changes the clustering only where the new texts reach. A full run links texts
through LSH buckets (stars, verified, then connected components), splits each component
into clusters, then merges clusters whose canonicals share a *name* and are close by
embedding (:mod:`transforms.enrich.semantic.merges`). :func:`affected_part` finds a set of old clusters
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
  cluster with exactly the role every other copy of the text has (:mod:`transforms.incremental.joined`).
  Such a record is written by the update's planner, not clustered again; a copy that
  would take over as canonical (``--canonical_policy latest``) or whose cluster is in the
  part anyway goes through the pipeline like any new text.
* **Name closure** (with semantic merging). A canonical outside the part that holds a
  blocking key a record of the part holds (a name, a title run, ..., or a band key of its
  vector) is brought in with its cluster, unless more than ``max_bucket`` canonicals
  outside hold that key: then the full run skips the key's bucket whatever the part holds,
  and the update must skip it too (``skip_names``). Any record of the part might become a
  canonical, so all of their keys count, the band keys of a vector it was never embedded
  with included (the planner embeds those texts, ``part_keys``).

The part is usually small (the new day's papers and the clusters they join), but it is
exact, not a heuristic: ``tests/test_incremental.py`` checks updates against full runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems


@dataclass(frozen=True)
class UpdatePart:
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
    # text keys of the texts the plan embedded (for vector blocking keys), written to the
    # update's embeddings table before the job runs
    planned_embeddings: frozenset[str] = frozenset()
    # the previous version's live records and clusters (what the update carries is these
    # less the part)
    previous_records: int = 0
    previous_clusters: int = 0

    @classmethod
    def all(cls) -> UpdatePart:
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
            "planned_embeddings": len(self.planned_embeddings),
            "everything": int(self.everything),
        }

    def to_json(self) -> str:
        document = {
            f.name: sorted(v) if isinstance(v := getattr(self, f.name), frozenset) else v
            for f in fields(self)
        }
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str) -> UpdatePart:
        document = json.loads(text)
        return cls(
            **{
                f.name: frozenset(document[f.name])
                if isinstance(document[f.name], list)
                else document[f.name]
                for f in fields(cls)
            }
        )


# The part itself, or the path of the update's part file holding it (read when a DoFn is set
# up: the update plans while the job graph is being built, see beam_jobs/carry.py).
UpdatePartSource = UpdatePart | str


def load_part(source: UpdatePartSource) -> UpdatePart:
    if isinstance(source, UpdatePart):
        return source
    with FileSystems.open(source) as fh:
        return UpdatePart.from_json(fh.read().decode("utf-8"))


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


def rows_where(table: pa.Table, column: str, values: Collection[str]) -> pa.Table:
    return table.filter(pc.is_in(table.column(column), value_set=_value_set(values)))


def _strings(array: pa.Array | pa.ChunkedArray) -> set[str]:
    return set(pc.unique(array).to_pylist())


class _Buckets:
    """Which indexed texts share an LSH bucket with given texts."""

    def __init__(self, previous: PreviousIndex, new_bands: Mapping[str, np.ndarray]) -> None:
        self._hashes = previous.text_hashes
        self._bands = previous.bands
        # one contiguous Arrow array per band: membership is a hash lookup per text (Arrow's
        # is_in), not the sort of the whole column numpy's isin does for a wanted set of
        # more than a few dozen keys (4x slower at 1M texts)
        self._columns = [pa.array(np.ascontiguousarray(column)) for column in self._bands.T]
        self._new = new_bands

    def mates(self, texts: Collection[str]) -> set[str]:
        if self._bands.size == 0 or not texts:
            return set()
        rows = pc.is_in(self._hashes, value_set=_value_set(texts)).to_numpy(zero_copy_only=False)
        keys = [self._bands[rows]]
        keys += [self._new[t][None, :] for t in texts if t in self._new]
        wanted = np.concatenate(keys)
        shares = np.zeros(len(self._bands), dtype=bool)
        for band, column in enumerate(self._columns):
            found = pc.is_in(column, value_set=pa.array(np.unique(wanted[:, band])))
            shares |= found.to_numpy(zero_copy_only=False)
        return set(self._hashes.filter(pa.array(shares)).to_pylist())


def affected_part(
    previous: PreviousIndex,
    new: NewTexts,
    max_bucket: int | None = None,
    part_keys: Callable[[set[str]], set[str]] | None = None,
) -> UpdatePart:
    """The old clusters to cluster again with ``new`` (see the module docstring).

    ``max_bucket``: the semantic merge's bucket cap; None when there is no semantic merge
    (then names play no part). ``part_keys``: record ids of the part -> blocking keys they
    may hold beyond their stored names (the band keys of the vectors of records that were
    no merge candidate; :class:`beam_jobs.incremental.part.PartVectors`).
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
            touched = _strings(rows_where(records, "content_hash", pending | mates)["cluster_id"])
            fresh_clusters = touched - clusters
            clusters |= fresh_clusters
            members = rows_where(records, "cluster_id", fresh_clusters)["content_hash"]
            pending = (mates | _strings(members)) - texts
            texts |= pending
        if max_bucket is None or previous.names is None:
            skip: set[str] = set()
            break
        part = _strings(rows_where(records, "cluster_id", clusters)["record_id"])
        wanted = new_names | (part_keys(part) if part_keys is not None else set())
        outside = _outside_holders(previous.names, part, wanted)
        extra = {
            record_id
            for holders in outside.values()
            if len(holders) <= max_bucket
            for record_id in holders
        }
        skip = {name for name, holders in outside.items() if len(holders) > max_bucket}
        extra_clusters = _strings(rows_where(records, "record_id", extra)["cluster_id"]) - clusters
        if not extra_clusters:
            break
        clusters |= extra_clusters
        members = rows_where(records, "cluster_id", extra_clusters)["content_hash"]
        pending = _strings(members) - texts
        texts |= pending
    part_records = rows_where(records, "cluster_id", clusters)
    return UpdatePart(
        cluster_ids=frozenset(clusters),
        record_ids=frozenset(part_records["record_id"].to_pylist()),
        content_hashes=frozenset(part_records["content_hash"].to_pylist()),
        skip_names=frozenset(skip),
    )


def _outside_holders(names: pa.Table, part: set[str], new_names: set[str]) -> dict[str, set[str]]:
    """For every name a record of the part (or a new record) holds: the merge candidates
    outside the part that hold it too (names no candidate outside holds are left out)."""
    inside = rows_where(names, "record_id", part)
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
