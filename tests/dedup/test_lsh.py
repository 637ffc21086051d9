"""transforms.dedup.lsh: Beam buckets == datasketch MinHashLSH buckets; stars; verification; hot keys."""

from __future__ import annotations

import hashlib
import random
from itertools import combinations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from datasketch import MinHash, MinHashLSH

from transforms.dedup.lsh import (
    LshBuckets,
    LshCandidatePairs,
    SignTexts,
    VerifiedSimilarPairs,
    shard_entries,
    shared_buckets,
    star_edges,
)
from transforms.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    as_signature,
    band_keys,
    estimated_jaccard,
    pack_signature,
)
from transforms.graph.components import union_find_components

CONFIG = MinHashConfig()  # word 3-grams, 128 permutations, threshold 0.8 -> 9 bands x 13 rows
BANDS, ROWS = CONFIG.lsh_params
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _pipeline() -> BeamTestPipeline:
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]), blocking=True)


def _metric(result, name: str):
    found = result.metrics().query(MetricsFilter().with_namespace("lsh").with_name(name))
    values = found["counters"] or found["distributions"]
    assert len(values) == 1, values
    return values[0].committed


def _node_id(token_list: list[str]) -> str:
    return hashlib.sha256(" ".join(token_list).encode()).hexdigest()[:16]


def _perturb(token_list: list[str], rate: float, vocab: list[str], rng: random.Random):
    out = []
    for word in token_list:
        roll = rng.random()
        if roll < rate / 3:
            continue  # delete
        if roll < 2 * rate / 3:
            out.append(rng.choice(vocab))  # substitute
            continue
        out.append(word)
        if roll < rate:
            out.append(rng.choice(vocab))  # insert
    return out


@pytest.fixture(scope="module")
def corpus() -> dict[str, np.ndarray]:
    """~2000 distinct texts: 1500 originals, 300 perturbed copies spanning the threshold, and
    60 chains of 5 successive edits (neighbours similar, chain ends not: similarity is not
    transitive, which is what makes verifying only against a bucket's centre lossy)."""
    rng = random.Random(2024)
    vocab = ["".join(rng.choice(LETTERS) for _ in range(6)) for _ in range(4000)]
    texts = [[rng.choice(vocab) for _ in range(rng.randint(40, 160))] for _ in range(1500)]
    for _ in range(300):
        rate = rng.choice([0.005, 0.01, 0.02, 0.04, 0.08])
        texts.append(_perturb(rng.choice(texts), rate, vocab, rng))
    for _ in range(60):
        text = rng.choice(texts[:1500])
        for _ in range(5):
            text = _perturb(text, 0.03, vocab, rng)
            texts.append(text)
    distinct = {_node_id(t): t for t in texts}  # each distinct text once, like the pipeline
    ids = sorted(distinct)
    signatures = MinHasher(CONFIG).signatures([distinct[i] for i in ids])
    return dict(zip(ids, signatures, strict=True))


@pytest.fixture(scope="module")
def datasketch_index(corpus) -> MinHashLSH:
    index = MinHashLSH(
        threshold=CONFIG.threshold, num_perm=CONFIG.num_perm, weights=CONFIG.lsh_weights
    )
    for node, signature in corpus.items():
        index.insert(node, MinHash(hashvalues=signature, scheme=CONFIG.scheme))
    assert (index.b, index.r) == (BANDS, ROWS)
    return index


def _datasketch_buckets(index: MinHashLSH) -> list[tuple[int, tuple[str, ...]]]:
    """(band, sorted members) of every bucket with >= 2 members, read from MinHashLSH."""
    buckets = []
    for band, table in enumerate(index.hashtables):
        for key in table.keys():  # noqa: SIM118 - datasketch storage, not a dict
            members = table.get(key)
            if len(members) >= 2:
                buckets.append((band, tuple(sorted(members))))
    return buckets


def _pairs_in_buckets(buckets) -> set[tuple[str, str]]:
    return {pair for _, members in buckets for pair in combinations(members, 2)}


def test_star_edges():
    assert star_edges(["c", "a", "b"]) == [("a", "c"), ("a", "b")]
    assert star_edges(["c", "a", "b"], second_centre=True) == [("a", "c"), ("a", "b"), ("b", "c")]
    assert star_edges(["b", "a"], second_centre=True) == [("a", "b")]
    assert star_edges(["a"]) == []


def test_candidates_and_verification_equal_datasketch(corpus, datasketch_index):
    """Exact equivalence with datasketch, on the same signatures.

    - Buckets: per band, the family of member sets of Beam's buckets equals MinHashLSH's
      hash tables (this is stronger than comparing candidate graphs: equal buckets imply
      equal pair sets *and* equal stars).
    - Query: the pairs MinHashLSH.query returns are exactly the pairs sharing a bucket.
    - Candidates: Beam's deduplicated star edges equal the union of the stars of datasketch's
      buckets. Verification equals the in-memory estimated-Jaccard filter of those stars.
    """
    expected_buckets = _datasketch_buckets(datasketch_index)
    queried = set()
    for node, signature in corpus.items():
        for other in datasketch_index.query(MinHash(hashvalues=signature, scheme=CONFIG.scheme)):
            if other != node:
                queried.add((min(node, other), max(node, other)))
    assert queried == _pairs_in_buckets(expected_buckets)
    assert len(queried) > 250  # the planted near-duplicates are there

    expected_stars = {edge for _, members in expected_buckets for edge in star_edges(members)}
    expected_verified = {
        (a, b, estimated_jaccard(corpus[a], corpus[b]))
        for a, b in expected_stars
        if estimated_jaccard(corpus[a], corpus[b]) >= CONFIG.threshold
    }
    assert 0 < len(expected_verified) < len(expected_stars)  # verification does filter

    p = _pipeline()
    signatures = p | "Signatures" >> beam.Create(sorted(corpus.items()))
    buckets = signatures | "Buckets" >> LshBuckets(BANDS, ROWS)
    assert_that(
        buckets | "DropHash" >> beam.Map(lambda kv: (kv[0][0], kv[1])),
        equal_to(expected_buckets),
        label="BucketsEqualDatasketch",
    )
    candidates = signatures | "Candidates" >> LshCandidatePairs(BANDS, ROWS)
    assert_that(candidates, equal_to(sorted(expected_stars)), label="StarsEqualDatasketch")
    verified = (candidates, signatures) | "Verify" >> VerifiedSimilarPairs(CONFIG.threshold)
    assert_that(verified, equal_to(sorted(expected_verified)), label="VerifiedEqualInMemory")
    result = p.run()
    assert _metric(result, "candidate_edges") == len(expected_stars)
    assert _metric(result, "verified_edges") == len(expected_verified)


def test_star_verification_recall(corpus, datasketch_index):
    """Recall cost of stars: verify only centre-to-member edges instead of all bucket pairs.

    Reference: every pair sharing a bucket whose estimated Jaccard reaches the threshold (what
    all-pairs verification keeps). Recall: the share of those pairs whose two ends still land
    in one connected component of the verified star graph. Measured on this corpus: 98.1%
    with one centre (6 of 319 pairs lost, all in chains), 99.7% with ``second_centre``.
    """
    buckets = _datasketch_buckets(datasketch_index)

    def similar(a: str, b: str) -> bool:
        return estimated_jaccard(corpus[a], corpus[b]) >= CONFIG.threshold

    true_pairs = {(a, b) for a, b in _pairs_in_buckets(buckets) if similar(a, b)}
    assert len(true_pairs) > 250

    def recall(second_centre: bool) -> float:
        kept = {
            (a, b)
            for _, members in buckets
            for a, b in star_edges(members, second_centre)
            if similar(a, b)
        }
        labels = union_find_components(kept)
        joined = sum(1 for a, b in true_pairs if a in labels and labels[a] == labels.get(b))
        return joined / len(true_pairs)

    one, two = recall(False), recall(True)
    print(
        f"same-component recall of {len(true_pairs)} true pairs: {one:.4f} (one centre), "
        f"{two:.4f} (two centres)"
    )
    assert 0.97 <= one <= two
    assert two >= 0.99


def test_hot_bucket_stays_linear():
    """3000 identical signatures: one bucket per band, 2999 star edges each, 2999 after dedup."""
    signature = MinHasher(CONFIG).signature(
        ["one", "boilerplate", "abstract", "copied", "everywhere"]
    )
    ids = [f"node{i:05d}" for i in range(3000)]
    expected = [("node00000", node) for node in ids[1:]]

    p = _pipeline()
    signatures = p | beam.Create([(node, signature) for node in ids])
    candidates = signatures | "Candidates" >> LshCandidatePairs(BANDS, ROWS)
    assert_that(candidates, equal_to(expected), label="StarEdges")
    verified = (candidates, signatures) | "Verify" >> VerifiedSimilarPairs(CONFIG.threshold)
    assert_that(verified, equal_to([(a, b, 1.0) for a, b in expected]), label="VerifiedStarEdges")
    result = p.run()
    assert _metric(result, "buckets") == BANDS
    assert _metric(result, "bucket_size").max == 3000
    assert _metric(result, "star_edges") == BANDS * 2999
    assert _metric(result, "candidate_edges") == 2999
    assert _metric(result, "verified_edges") == 2999


def test_second_centre_stays_linear():
    """Two centres on a 1000-member bucket: 999 + 998 edges, not 1000 * 999 / 2."""
    signature = MinHasher(CONFIG).signature(["copied", "boilerplate"])
    ids = [f"node{i:05d}" for i in range(1000)]
    expected = [("node00000", n) for n in ids[1:]] + [(n, "node00999") for n in ids[1:-1]]

    p = _pipeline()
    signatures = p | beam.Create([(node, signature) for node in ids])
    candidates = signatures | LshCandidatePairs(BANDS, ROWS, second_centre=True)
    assert_that(candidates, equal_to(expected))
    result = p.run()
    assert _metric(result, "candidate_edges") == 999 + 998


def test_verification_threshold_and_missing_signatures():
    hasher = MinHasher(CONFIG)
    base = [f"w{i}" for i in range(100)]
    near = base[:97] + ["x", "y", "z"]  # ~0.9 similar
    far = [f"v{i}" for i in range(100)]
    signatures = {
        "a": hasher.signature(base),
        "b": hasher.signature(near),
        "c": hasher.signature(far),
    }
    ab = estimated_jaccard(signatures["a"], signatures["b"])
    assert ab >= CONFIG.threshold

    p = _pipeline()
    sigs = p | "Signatures" >> beam.Create(sorted(signatures.items()))
    pairs = p | "Pairs" >> beam.Create([("a", "b"), ("a", "c"), ("a", "unknown")])
    verified = (pairs, sigs) | VerifiedSimilarPairs(CONFIG.threshold)
    assert_that(verified, equal_to([("a", "b", ab)]))
    result = p.run()
    assert _metric(result, "rejected_edges") == 1
    assert _metric(result, "pairs_without_signature") == 1


def test_sign_texts_matches_minhasher():
    hasher = MinHasher(CONFIG)
    texts = [(f"t{i}", [f"w{j}" for j in range(i, i + i % 7)]) for i in range(40)]
    expected = [(node, tuple(hasher.signature(t).tolist())) for node, t in texts]

    p = _pipeline()
    signed = p | beam.Create(texts) | SignTexts(CONFIG, max_batch_size=8)
    assert_that(
        signed | beam.MapTuple(lambda n, s: (n, tuple(as_signature(s).tolist()))),
        equal_to(expected),
    )
    p.run()


def test_composites_validate_parameters():
    with pytest.raises(ValueError, match="threshold"):
        VerifiedSimilarPairs(0.0)
    with pytest.raises(ValueError, match="bands"):
        LshCandidatePairs(0, 13)
    with pytest.raises(ValueError, match="bands"):
        LshBuckets(9, 0)
    candidates = LshCandidatePairs.from_config(CONFIG)
    assert (candidates.bands, candidates.rows) == (BANDS, ROWS)


@pytest.mark.parametrize("shards", [1, 3, 256])
def test_shards_form_exactly_the_buckets_of_the_band_keys(corpus, shards):
    """Sharded in-memory bucketing (what the pipeline does) equals grouping every
    (band, band hash) key on its own, whatever the shard count and the batch split."""
    items = sorted(corpus.items())
    expected: dict[tuple[int, int], list[str]] = {}
    for node, signature in items:
        for key in band_keys(signature, BANDS, ROWS):
            expected.setdefault(key, []).append(node)
    expected = {k: sorted(v) for k, v in expected.items() if len(v) > 1}

    lists_by_shard: dict[int, list] = {}
    for start in range(0, len(items), 97):  # uneven batches, as BatchElements makes them
        for shard, entries in shard_entries(items[start : start + 97], BANDS, ROWS, shards).items():
            lists_by_shard.setdefault(shard, []).append(entries)
    found = {
        key: sorted(members)
        for entry_lists in lists_by_shard.values()
        for key, members in shared_buckets(entry_lists)
    }
    assert found == expected
    assert len(lists_by_shard) <= shards
    assert list(shared_buckets([])) == []


def test_packed_signatures_keep_every_value_and_every_band_key():
    hasher = MinHasher(CONFIG)
    signature = hasher.signature(["a", "packed", "signature", "travels", "as", "bytes"])
    packed = pack_signature(signature)
    assert isinstance(packed, bytes) and len(packed) == 4 * CONFIG.num_perm
    assert as_signature(packed).tolist() == signature.tolist()
    assert band_keys(packed, BANDS, ROWS) == band_keys(signature, BANDS, ROWS)
    assert estimated_jaccard(packed, signature) == 1.0
