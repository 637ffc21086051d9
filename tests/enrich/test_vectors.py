"""Vector blocking keys (random-hyperplane LSH on embeddings) and the merge stage using them."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.enrich.semantic.merges import RevisionMerges
from transforms.enrich.semantic.rule import Candidate, SemanticConfig, cosine
from transforms.enrich.semantic.vectors import (
    VectorLSH,
    band_codes,
    blocking,
    hyperplanes,
    is_vector_key,
    sketch,
    sketch_bits,
    sketch_cosine,
    sketch_floor,
    vector_keys,
)
from transforms.metrics import SEMANTIC_NAMESPACE

DIM = 384


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.standard_normal((n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def at_cosine(rng: np.random.Generator, base: np.ndarray, target: float) -> np.ndarray:
    """A unit vector with exactly cosine ``target`` to the unit vector ``base``."""
    other = rng.standard_normal(base.shape)
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    return target * base + np.sqrt(1.0 - target**2) * other


def test_keys_are_a_pure_function_of_the_direction() -> None:
    lsh = VectorLSH(bits=8, bands=16)
    rng = np.random.default_rng(1)
    v = unit_rows(rng, 3)
    keys = vector_keys(v, lsh)
    assert keys == vector_keys(v.copy(), lsh)  # same vectors, same keys
    assert vector_keys(3.0 * v, lsh) == keys  # only the direction counts
    assert all(len(k) == 16 and all(is_vector_key(key) for key in k) for k in keys)
    # one band's code is the signs of its own planes
    codes = band_codes(v, lsh)
    assert codes.dtype == np.uint32 and codes.shape == (3, 16)
    signs = v @ hyperplanes(DIM, lsh).T > 0
    assert codes[0, 1] == sum(int(s) << j for j, s in enumerate(signs[0, 8:16]))
    # the same band code in two bands is two keys
    assert len(vector_keys(np.zeros((1, DIM)), lsh)[0]) == 16
    # one projection gives both what blocks and what filters
    assert blocking(v[0], lsh) == (keys[0], sketch(v[0], lsh))
    # a different seed draws other planes
    assert vector_keys(v, VectorLSH(bits=8, bands=16, seed=2)) != keys


def test_off_and_bad_settings() -> None:
    assert vector_keys(np.ones((2, DIM)), VectorLSH(bands=0)) == [frozenset(), frozenset()]
    with pytest.raises(ValueError, match="bits"):
        VectorLSH(bits=0)
    with pytest.raises(ValueError, match="bits"):
        VectorLSH(bits=33)
    with pytest.raises(ValueError, match="bands"):
        VectorLSH(bands=-1)


def test_measured_collisions_follow_the_curve() -> None:
    """The share of pairs at a given cosine that share a band key is the curve's (binomial
    spread over 600 pairs: within 0.06)."""
    lsh = VectorLSH(bits=20, bands=128)
    rng = np.random.default_rng(7)
    for target in (0.75, 0.85, 0.9):
        base = unit_rows(rng, 600)
        near = np.stack([at_cosine(rng, b, target) for b in base])
        a, b = band_codes(base, lsh), band_codes(near, lsh)
        measured = float(np.mean((a == b).any(axis=1)))
        assert abs(measured - lsh.collision_probability(target)) < 0.06, target


def _candidates(vectors: np.ndarray, lsh: VectorLSH, prefix: str = "c") -> list[Candidate]:
    return [
        Candidate(f"{prefix}{i:05d}", (i,), keys, v.astype(np.float32), sketch=sketch(v, lsh))
        for i, (v, keys) in enumerate(zip(vectors, vector_keys(vectors, lsh), strict=True))
    ]


def test_stage_finds_what_a_brute_force_cosine_search_finds() -> None:
    """3,000 vectors, 60 of them close to another (cosine 0.91-0.98), no names at all: the
    Beam stage merges exactly the pairs an all-pairs cosine search puts above the bar."""
    config = SemanticConfig(threshold=0.9, vectors=VectorLSH())
    rng = np.random.default_rng(11)
    vectors = unit_rows(rng, 2940)
    targets = rng.uniform(0.91, 0.98, 60)
    near = np.stack([at_cosine(rng, vectors[i * 7], t) for i, t in enumerate(targets)])
    vectors = np.concatenate([vectors, near])
    members = _candidates(vectors, config.vectors)

    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    above = np.argwhere(np.triu(similarity >= config.threshold, k=1))
    # a pair merges into its first member by rank (the index); ids sort like indices
    expected = sorted((members[j].cluster_id, members[i].cluster_id) for i, j in above)
    assert len(expected) == 60

    pipeline = TestPipeline()
    merges = (
        pipeline
        | beam.Create(members)
        | RevisionMerges(config)
        | beam.MapTuple(lambda old, m: (old, m.into))
    )
    assert_that(merges, equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()
    # random 384-d vectors share band keys now and then; their sketches drop those pairs
    # before verification, and every planted pair still gets verified
    assert semantic_counter(result, "verified_pairs") == 60
    assert semantic_counter(result, "sketch_dropped_pairs") > 0


def semantic_counter(result, name: str) -> int:
    found = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(SEMANTIC_NAMESPACE).with_name(name)
    )["counters"]
    return sum(c.committed for c in found)


def test_sketches_estimate_the_cosine() -> None:
    lsh = VectorLSH()
    bits = sketch_bits(lsh)
    rng = np.random.default_rng(9)
    base = unit_rows(rng, 200)
    for target in (0.5, 0.8, 0.95):
        errors = [
            sketch_cosine(sketch(b, lsh), sketch(at_cosine(rng, b, target), lsh), bits) - target
            for b in base
        ]
        assert abs(float(np.mean(errors))) < 0.02 and float(np.std(errors)) < 0.04, target
    # the floor sits four spreads below the bar: a pair at the bar passes with near certainty
    floor = sketch_floor(0.80, bits)
    assert 0.6 < floor < 0.8
    passed = [
        sketch_cosine(sketch(b, lsh), sketch(at_cosine(rng, b, 0.80), lsh), bits) >= floor
        for b in base
    ]
    assert all(passed)


def test_a_hot_vector_bucket_is_skipped_not_paired() -> None:
    """40 canonicals with one vector share every band key: more than max_bucket canonicals
    in each bucket, so every bucket is skipped (counted) and nothing is paired (never
    40 x 39 / 2 pairs)."""
    config = SemanticConfig(threshold=0.9, max_bucket=32, vectors=VectorLSH())
    rng = np.random.default_rng(3)
    centre = unit_rows(rng, 1)[0]
    hot = np.repeat(centre[None, :], 40, axis=0)
    members = _candidates(hot, config.vectors, "h")
    pipeline = TestPipeline()
    merges = pipeline | beam.Create(members) | RevisionMerges(config)
    assert_that(merges, equal_to([]))
    result = pipeline.run()
    result.wait_until_finish()
    assert semantic_counter(result, "skipped_buckets") == config.vectors.bands


def test_revision_cosines_meet_in_a_bucket() -> None:
    """The curve at the rule's bars, for the measured setting (docs/benchmarks.md shows the
    measured curve and the choice)."""
    assert not SemanticConfig().vectors.enabled  # off by default
    lsh = VectorLSH()
    assert lsh.collision_probability(0.86) > 0.95
    assert lsh.collision_probability(0.90) > 0.995
    assert lsh.collision_probability(0.50) < 0.1
    assert cosine(np.ones(3), np.ones(3)) == pytest.approx(1.0)
