"""MinHash LSH in Beam: sign texts, bucket signatures by band, verify candidate pairs.

Shape (worst-case key size of each GroupByKey in brackets):

    (node_id, tokens) ─ SignTexts ─ (node_id, signature)
        ─ LshCandidatePairs: ShardEntries ─ GroupShards [entries of the buckets of one shard]
                             ─ SharedBuckets (numpy, per shard)
                             ─ StarEdges ─ DistinctEdges            -> (a, b), a < b
    (pairs, signatures)
        ─ VerifiedSimilarPairs: JoinSignatures [edges of a node] ─ GroupEdgeEnds [2 ends]
                                                                   -> (a, b, similarity)

Buckets are exactly datasketch's ``MinHashLSH`` buckets (same bands and rows, a band matches
when its slice is equal; tested against ``MinHashLSH`` insert/query). A bucket of k members
becomes a *star* of k - 1 edges to its smallest id rather than k(k-1)/2 pairs, so a hot bucket
(thousands of copies of one boilerplate text) stays linear. Stars are enough because the next
stage takes connected components.

What stars cost: an edge is kept only if its two ends are similar, and similarity is not
transitive. In a bucket {m, x, y} where x ~ y but the centre m is too far from y (a chain of
successive edits m ~ x ~ y, or a false-positive m), the star keeps m - x and drops m - y, so
x - y is lost unless another band's bucket or another path joins them. ``second_centre=True``
also stars each bucket on its largest id, for at most k - 2 more edges (none for 2-member
buckets, the common case), and recovers most of those pairs (measured in
``tests/dedup/test_lsh.py``; figures in docs/benchmarks.md). ``star_edges`` defaults to the
plain star; the pipeline (``DedupConfig.second_centre``) uses both centres.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from transforms.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    Signature,
    as_signature,
    band_hashes,
    estimated_jaccard,
    pack_signature,
)
from transforms.metrics import LSH_NAMESPACE, counter, distribution

EDGES = "edges"
LINKED_SIGNATURES = "linked_signatures"

BucketKey = tuple[int, int]  # (band index, 64-bit hash of the band's slice)
Edge = tuple[str, str]


# ---------------------------------------------------------------------------- pure helpers


def star_edges(members: Collection[str], second_centre: bool = False) -> list[Edge]:
    """(smallest member, other) for every other member: k - 1 edges for k members.

    With ``second_centre`` also (other, largest member): at most 2k - 3 edges, and the same
    single edge for the (most common) 2-member bucket. ``members`` is iterated more than
    once (a GroupByKey value is re-iterable), so no copy is made.
    """
    centre = min(members)
    edges = [(centre, other) for other in members if other != centre]
    if second_centre and len(edges) > 1:
        far = max(members)
        edges += [(other, far) for other in members if other != far and other != centre]
    return edges


# ------------------------------------------------------------------------------------ DoFns


class _SignBatch(beam.DoFn):
    """Signs a batch of (node_id, tokens) at once: numpy cost is per batch, not per text.
    Signatures leave packed (:func:`transforms.dedup.minhash.pack_signature`)."""

    def __init__(self, config: MinHashConfig) -> None:
        self._config = config
        self._hasher: MinHasher | None = None

    def setup(self) -> None:
        self._hasher = MinHasher(self._config)

    def process(self, batch: Sequence[tuple[str, Sequence[str]]]):
        assert self._hasher is not None
        signatures = self._hasher.signatures([tokens for _, tokens in batch])
        for (node_id, _), signature in zip(batch, signatures, strict=True):
            yield node_id, pack_signature(signature)


class _BucketDoFn(beam.DoFn):
    """Base for DoFns over grouped buckets: skips singletons, counts buckets and sizes."""

    def __init__(self) -> None:
        self._buckets = counter("buckets", LSH_NAMESPACE)
        self._sizes = distribution("bucket_size", LSH_NAMESPACE)

    def _shared(self, members: Iterable[str]) -> bool:
        if len(list(itertools.islice(members, 2))) < 2:
            return False
        self._buckets.inc()
        self._sizes.update(sum(1 for _ in members))
        return True


class _SharedBuckets(_BucketDoFn):
    def process(self, element: tuple[BucketKey, Iterable[str]]):
        key, members = element
        if self._shared(members):
            yield key, tuple(sorted(members))


class _BucketStars(_BucketDoFn):
    def __init__(self, second_centre: bool) -> None:
        super().__init__()
        self._second_centre = second_centre
        self._edges = counter("star_edges", LSH_NAMESPACE)

    def process(self, element: tuple[BucketKey, Collection[str]]) -> Iterator[Edge]:
        members = element[1]
        if self._shared(members):
            edges = star_edges(members, self._second_centre)
            self._edges.inc(len(edges))
            yield from edges


class _Count(beam.DoFn):
    def __init__(self, name: str) -> None:
        self._counter = counter(name, LSH_NAMESPACE)

    def process(self, element: Any) -> Iterator[Any]:
        self._counter.inc()
        yield element


def _single_signature(node: str, signatures: Iterable[np.ndarray]) -> np.ndarray | None:
    found = list(itertools.islice(signatures, 2))
    if len(found) > 1:
        raise ValueError(f"node {node!r} has more than one signature: node ids must be unique")
    return found[0] if found else None


class _AttachSignature(beam.DoFn):
    """At node n: send (edge, (n, signature of n)) for every candidate edge n is an end of."""

    def __init__(self) -> None:
        self._missing = counter("pairs_without_signature", LSH_NAMESPACE)

    def process(self, element: tuple[str, dict[str, Iterable[Any]]]):
        node, grouped = element
        signature = _single_signature(node, grouped["signature"])
        if signature is None:
            self._missing.inc(sum(1 for _ in grouped["edge"]))
            return
        for edge in grouped["edge"]:
            yield tuple(edge), (node, signature)


class _VerifyPair(beam.DoFn):
    """At edge (a, b), with both ends' signatures: keep it if the estimated Jaccard reaches
    the threshold (an edge missing an end was counted where the signature was missing)."""

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._verified = counter("verified_edges", LSH_NAMESPACE)
        self._rejected = counter("rejected_edges", LSH_NAMESPACE)

    def process(self, element: tuple[Edge, Iterable[tuple[str, Any]]]):
        (a, b), ends = element
        signatures = dict(ends)
        if a not in signatures or b not in signatures:
            return
        similarity = estimated_jaccard(signatures[a], signatures[b])
        if similarity < self._threshold:
            self._rejected.inc()
            return
        self._verified.inc()
        yield a, b, similarity
        yield beam.pvalue.TaggedOutput(LINKED_SIGNATURES, (a, signatures[a]))
        yield beam.pvalue.TaggedOutput(LINKED_SIGNATURES, (b, signatures[b]))


# ------------------------------------------------------------------------------- composites


def _checked_banding(bands: int, rows: int) -> tuple[int, int]:
    if bands < 1 or rows < 1:
        raise ValueError(f"bands and rows must be >= 1, got bands={bands}, rows={rows}")
    return bands, rows


class SignTexts(beam.PTransform):
    """(node_id, tokens) -> (node_id, packed signature), signed in batches by one MinHasher.

    Consumers read a packed signature with :func:`transforms.dedup.minhash.as_signature`; every
    composite here accepts packed and array signatures alike.
    """

    def __init__(self, config: MinHashConfig, max_batch_size: int = 512) -> None:
        super().__init__()
        self.config = config
        self.max_batch_size = max_batch_size

    def expand(self, texts):
        return (
            texts
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.max_batch_size)
            | "Sign" >> beam.ParDo(_SignBatch(self.config))
        )


DEFAULT_SHARDS = 256


# A shard's entries as they travel: band indexes (uint16 bytes), band hashes (uint64 bytes),
# and the node id of each entry. Arrays, not tuples: a shuffle copies them as bytes.
ShardEntries = tuple[bytes, bytes, list[str]]


def shard_entries(
    batch: Sequence[tuple[str, Signature]], bands: int, rows: int, shards: int
) -> dict[int, ShardEntries]:
    """The (band, band_hash, node_id) entries of a batch of signatures, split by shard.

    A bucket's shard is its band hash modulo ``shards`` (the hash is uniform), so every entry
    of one bucket lands in one shard whichever batch it came from.
    """
    if not batch:
        return {}
    nodes = [node_id for node_id, _ in batch]
    hashes = band_hashes(np.stack([as_signature(sig) for _, sig in batch]), bands, rows)
    shard_of = (hashes % np.uint64(shards)).ravel()
    order = np.argsort(shard_of, kind="stable")
    sorted_shards = shard_of[order]
    flat_hashes = hashes.ravel()[order]
    flat_bands = (order % bands).astype(np.uint16)
    flat_nodes = order // bands
    cuts = [0, *(np.flatnonzero(np.diff(sorted_shards)) + 1).tolist(), len(order)]
    return {
        int(sorted_shards[start]): (
            flat_bands[start:end].tobytes(),
            flat_hashes[start:end].tobytes(),
            [nodes[i] for i in flat_nodes[start:end].tolist()],
        )
        for start, end in itertools.pairwise(cuts)
    }


def shared_buckets(entry_lists: Iterable[ShardEntries]) -> Iterator[tuple[BucketKey, list[str]]]:
    """The buckets of >= 2 members among a shard's entries, in key order."""
    entry_lists = list(entry_lists)
    if not entry_lists:
        return
    band = np.concatenate([np.frombuffer(b, dtype=np.uint16) for b, _, _ in entry_lists])
    band_hash = np.concatenate([np.frombuffer(h, dtype=np.uint64) for _, h, _ in entry_lists])
    nodes = [node_id for _, _, ids in entry_lists for node_id in ids]
    order = np.lexsort((band_hash, band))
    band, band_hash = band[order], band_hash[order]
    new_key = np.ones(len(order), dtype=bool)
    new_key[1:] = (band[1:] != band[:-1]) | (band_hash[1:] != band_hash[:-1])
    starts = np.flatnonzero(new_key)
    ends = np.append(starts[1:], len(order))
    shared = (ends - starts) > 1
    for start, end in zip(starts[shared].tolist(), ends[shared].tolist(), strict=True):
        key = (int(band[start]), int(band_hash[start]))
        yield key, [nodes[i] for i in order[start:end].tolist()]


def band_rows(
    batch: Sequence[tuple[str, Signature]], bands: int, rows: int, schema: pa.Schema
) -> pa.RecordBatch:
    """The ``lsh_bands`` rows (node id, its band hashes) of a batch of signatures."""
    hashes = band_hashes(np.stack([as_signature(sig) for _, sig in batch]), bands, rows)
    offsets = np.arange(0, hashes.size + 1, bands, dtype=np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(hashes.ravel()))
    return pa.RecordBatch.from_arrays(
        [pa.array([node_id for node_id, _ in batch], pa.string()), lists], schema=schema
    )


class TextBandRows(beam.PTransform):
    """(node_id, signature) -> Arrow batches of ``lsh_bands`` rows (``schema``): the index an
    update looks new texts up in, written a batch at a time (no per-text element cost)."""

    def __init__(self, bands: int, rows: int, schema: pa.Schema) -> None:
        super().__init__()
        self.bands, self.rows = _checked_banding(bands, rows)
        self.schema = schema

    def expand(self, signatures):
        bands, rows, schema = self.bands, self.rows, self.schema
        return (
            signatures
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=4096)
            | "BandRows" >> beam.Map(band_rows, bands, rows, schema)
        )


class _ShardEntries(beam.DoFn):
    def __init__(self, bands: int, rows: int, shards: int) -> None:
        self._bands, self._rows, self._shards = bands, rows, shards

    def process(self, batch):
        yield from shard_entries(batch, self._bands, self._rows, self._shards).items()


class _GroupBuckets(beam.PTransform):
    """(node_id, signature) -> ((band, band_hash), members) for every bucket of >= 2.

    Grouping each (band, band_hash) key on its own would shuffle bands x texts tiny
    elements, nearly all of them singleton buckets; the per-element cost of that shuffle
    was the largest single cost of the dedup path. Instead a batch of signatures is split
    into ``shards`` lists of entries, the lists are grouped by shard, and each shard's
    buckets are formed in memory: the same buckets, about ``batches x shards`` elements.
    A shard holds ``texts x bands / shards`` entries (size it for the corpus: see
    docs/design.md); a hot bucket is in one shard, as it was in one key.
    """

    def __init__(self, bands: int, rows: int, shards: int = DEFAULT_SHARDS) -> None:
        super().__init__()
        self.bands, self.rows = _checked_banding(bands, rows)
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.shards = shards

    def expand(self, signatures):
        return (
            signatures
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=4096)
            | "ShardEntries" >> beam.ParDo(_ShardEntries(self.bands, self.rows, self.shards))
            | "GroupShards" >> beam.GroupByKey()
            | "SharedBuckets" >> beam.FlatMap(lambda kv: shared_buckets(kv[1]))
        )


class LshBuckets(beam.PTransform):
    """(node_id, signature) -> ((band, band_hash), sorted members) for buckets of >= 2.

    For inspection and tests: it materializes each bucket. :class:`LshCandidatePairs` uses the
    same grouping but never copies a bucket. Counters: ``lsh/buckets``, distribution
    ``lsh/bucket_size`` (its max is the largest bucket).
    """

    def __init__(self, bands: int, rows: int, shards: int = DEFAULT_SHARDS) -> None:
        super().__init__()
        self.bands, self.rows = _checked_banding(bands, rows)
        self.shards = shards

    def expand(self, signatures):
        return (
            signatures
            | "Group" >> _GroupBuckets(self.bands, self.rows, self.shards)
            | "SharedBuckets" >> beam.ParDo(_SharedBuckets())
        )


class LshCandidatePairs(beam.PTransform):
    """(node_id, signature) -> distinct candidate edges (a, b), a < b: one star per bucket.

    ``second_centre=True`` adds a star on each bucket's largest id too (see the module
    docstring: it closes the measured recall gap of verifying against one centre, for at most
    k - 2 more edges per k-member bucket). Counters: ``lsh/buckets``, distribution
    ``lsh/bucket_size``, ``lsh/star_edges`` (before deduplication across bands),
    ``lsh/candidate_edges`` (after).
    """

    def __init__(
        self,
        bands: int,
        rows: int,
        second_centre: bool = False,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        super().__init__()
        self.bands, self.rows = _checked_banding(bands, rows)
        self.second_centre = second_centre
        self.shards = shards

    @classmethod
    def from_config(
        cls, config: MinHashConfig, second_centre: bool = False, shards: int = DEFAULT_SHARDS
    ) -> LshCandidatePairs:
        return cls(*config.lsh_params, second_centre=second_centre, shards=shards)

    def expand(self, signatures):
        return (
            signatures
            | "Group" >> _GroupBuckets(self.bands, self.rows, self.shards)
            | "StarEdges" >> beam.ParDo(_BucketStars(self.second_centre))
            | "DistinctEdges" >> beam.Distinct()
            | "CountCandidates" >> beam.ParDo(_Count("candidate_edges"))
        )


class VerifiedSimilarPairs(beam.PTransform):
    """(candidate pairs, signatures) -> (a, b, estimated Jaccard) for pairs >= ``threshold``.

    One CoGroupByKey by node instead of a side input, so no worker ever holds all
    signatures: each node sends its signature to every candidate edge it is an end of, and
    a GroupByKey by edge brings both ends together. A signature travels once per edge it
    takes part in (and every signature enters the join once). Counters:
    ``lsh/verified_edges``, ``lsh/rejected_edges``, ``lsh/pairs_without_signature``
    (should stay 0).

    ``with_signatures=True`` returns ``result.edges`` and ``result.linked_signatures``:
    (node, signature) for every end of a verified edge (repeated once per edge), so later
    stages get the signatures of linked texts, and only of those, without another join.
    """

    def __init__(self, threshold: float, with_signatures: bool = False) -> None:
        super().__init__()
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        self.with_signatures = with_signatures

    def expand(self, pcolls):
        pairs, signatures = pcolls
        verified = (
            {
                "signature": signatures,
                "edge": pairs | "EdgeEnds" >> beam.FlatMap(lambda e: ((e[0], e), (e[1], e))),
            }
            | "JoinSignatures" >> beam.CoGroupByKey()
            | "AttachSignature" >> beam.ParDo(_AttachSignature())
            | "GroupEdgeEnds" >> beam.GroupByKey()
            | "VerifyPair"
            >> beam.ParDo(_VerifyPair(self.threshold)).with_outputs(LINKED_SIGNATURES, main=EDGES)
        )
        return verified if self.with_signatures else verified[EDGES]
