"""transforms.dedup.minhash: bit-identity with datasketch, shingling, banding, pickling."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

import transforms.dedup.minhash as minhash_module
from transforms.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    band_keys,
    estimated_jaccard,
    exact_jaccard,
    shingle_hash,
    shingle_hashes,
    shingles,
)
from transforms.text import tokens

ALPHABET = "abcdefghijklmnopqrstuvwxyzéüßøçñ中文字αβγж😀"


def _varied_texts(n: int, seed: int = 0) -> list[list[str]]:
    """Token lists of very different lengths and scripts, including empty and 1-2 tokens."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 10))) for _ in range(400)]
    lengths = [0, 1, 2, 3, 4, 5, 8, 20, 60, 150]
    return [[rng.choice(words) for _ in range(rng.choice(lengths))] for _ in range(n)]


def _datasketch_signature(token_list: list[str], config: MinHashConfig) -> np.ndarray:
    reference = MinHash(config.num_perm, config.seed, hashfunc=shingle_hash, scheme=config.scheme)
    reference.update_batch([s.encode("utf-8") for s in shingles(token_list, config)])
    return reference.hashvalues


# --------------------------------------------------------------------------------- config


def test_config_defaults_and_ngram_per_shingle_kind():
    assert MinHashConfig().ngram == 3
    assert MinHashConfig(shingle="char").ngram == 5
    assert MinHashConfig(shingle="char", ngram=4).ngram == 4
    assert MinHashConfig() == MinHashConfig(ngram=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shingle": "sentence"}, "shingle"),
        ({"ngram": 0}, "ngram"),
        ({"ngram": 2.5}, "ngram"),
        ({"num_perm": 1}, "num_perm"),
        ({"num_perm": 128.0}, "num_perm"),
        ({"seed": -1}, "seed"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"scheme": "affine64"}, "scheme"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MinHashConfig(**kwargs)


@pytest.mark.parametrize(
    ("threshold", "num_perm"), [(0.8, 128), (0.5, 128), (0.9, 64), (0.7, 32), (0.85, 256)]
)
def test_lsh_params_match_datasketch(threshold, num_perm):
    config = MinHashConfig(threshold=threshold, num_perm=num_perm)
    index = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=config.lsh_weights)
    assert config.lsh_params == (index.b, index.r)
    equal = MinHashConfig(threshold=threshold, num_perm=num_perm, lsh_weights=(0.5, 0.5))
    default_index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert equal.lsh_params == (default_index.b, default_index.r)


# ------------------------------------------------------------------------------- shingles


def test_word_shingles():
    config = MinHashConfig(shingle="word", ngram=2)
    assert shingles(["a", "b", "c"], config) == ["a b", "b c"]
    assert shingles(["a"], config) == ["a"]  # shorter than n: the whole text
    assert shingles([], config) == []
    assert shingles(["a", "", "b"], config) == ["a b"]  # empty tokens carry no text


def test_char_shingles():
    config = MinHashConfig(shingle="char", ngram=3)
    assert shingles(["ab", "cd"], config) == ["ab ", "b c", " cd"]
    assert shingles(["ab"], config) == ["ab"]
    assert shingles([], config) == []
    assert shingles([""], config) == []


def test_shingles_of_real_text():
    words = tokens("Attention Is All You Need: the Transformer.")
    assert shingles(words, MinHashConfig())[:2] == ["attention is all", "is all you"]


# --------------------------------------------------------------------------- shingle hash


def test_shingle_hash_is_pinned():
    """Golden values: a change here silently invalidates every stored signature."""
    assert shingle_hash(b"deep neural network") == 3516597116
    assert shingle_hash("é中😀".encode()) == 3089448942
    assert shingle_hash("é中😀") == 3089448942  # str is accepted too


@pytest.mark.parametrize("shingle_kind", ["word", "char"])
def test_vectorized_hashes_equal_scalar_hash(shingle_kind):
    config = MinHashConfig(shingle=shingle_kind)
    for token_list in _varied_texts(200, seed=1):
        vectorized = shingle_hashes(token_list, config)
        scalar = [shingle_hash(s.encode("utf-8")) for s in shingles(token_list, config)]
        assert vectorized.dtype == np.uint64
        assert vectorized.tolist() == scalar
        assert all(h < 2**32 for h in scalar)


@settings(max_examples=150, deadline=None)
@given(
    token_list=st.lists(st.text(min_size=0, max_size=6), max_size=12),
    shingle_kind=st.sampled_from(["word", "char"]),
    ngram=st.integers(min_value=1, max_value=6),
)
def test_vectorized_hashes_equal_scalar_hash_property(token_list, shingle_kind, ngram):
    config = MinHashConfig(shingle=shingle_kind, ngram=ngram)
    expected = [
        shingle_hash(s.encode("utf-8", "surrogatepass")) for s in shingles(token_list, config)
    ]
    assert shingle_hashes(token_list, config).tolist() == expected


# ----------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("shingle_kind", ["word", "char"])
def test_signatures_equal_datasketch_hashvalues(shingle_kind, scheme):
    config = MinHashConfig(shingle=shingle_kind, scheme=scheme)
    hasher = MinHasher(config)
    texts = _varied_texts(300, seed=2)
    batch = hasher.signatures(texts)
    assert batch.shape == (300, config.num_perm)
    for token_list, row in zip(texts, batch, strict=True):
        expected = _datasketch_signature(token_list, config)
        single = hasher.signature(token_list)
        assert single.dtype == expected.dtype == row.dtype
        assert np.array_equal(single, expected)
        assert np.array_equal(row, expected)


def test_signature_with_other_seed_and_size_equals_datasketch():
    config = MinHashConfig(num_perm=64, seed=42, shingle="char", ngram=4)
    hasher = MinHasher(config)
    for token_list in _varied_texts(30, seed=3):
        assert np.array_equal(
            hasher.signature(token_list), _datasketch_signature(token_list, config)
        )


def test_batches_split_into_chunks_give_the_same_signatures(monkeypatch):
    hasher = MinHasher(MinHashConfig())
    texts = _varied_texts(120, seed=4)
    whole = hasher.signatures(texts)
    monkeypatch.setattr(minhash_module, "_CHUNK_ROWS", 50)
    assert np.array_equal(hasher.signatures(texts), whole)
    assert hasher.signatures([]).shape == (0, 128)


def test_empty_text_signature_is_all_max_hash_like_datasketch():
    for scheme in ("affine32", "legacy"):
        hasher = MinHasher(MinHashConfig(scheme=scheme))
        fresh = MinHash(128, 1, scheme=scheme).hashvalues
        assert np.array_equal(hasher.signature([]), fresh)
        assert np.array_equal(hasher.signatures([[], [], []]), np.vstack([fresh] * 3))


def test_minhasher_pickles_as_its_config():
    hasher = MinHasher(MinHashConfig(seed=7))
    payload = pickle.dumps(hasher)
    assert len(payload) < 400  # the config, not the permutations
    clone = pickle.loads(payload)
    text = tokens("Sparse mixture of experts scale language models cheaply")
    assert np.array_equal(clone.signature(text), hasher.signature(text))


# --------------------------------------------------------------------------- LSH, Jaccard


def test_band_keys_collide_exactly_when_slices_are_equal():
    rng = np.random.default_rng(0)
    bands, rows = 9, 13
    base = rng.integers(0, 2**32, size=128, dtype=np.uint64)
    keys = band_keys(base, bands, rows)
    assert [band for band, _ in keys] == list(range(bands))
    assert len({key for _, key in keys}) == bands
    for band in range(bands):
        changed = base.copy()
        changed[band * rows + 5] ^= 1
        other = band_keys(changed, bands, rows)
        assert [a == b for a, b in zip(keys, other, strict=True)] == [
            i != band for i in range(bands)
        ]
    tail = base.copy()
    tail[bands * rows :] = 0  # positions outside all bands do not matter
    assert band_keys(tail, bands, rows) == keys
    assert band_keys(base.astype(np.uint32), bands, rows) == keys  # dtype does not matter
    with pytest.raises(ValueError, match="exceed"):
        band_keys(base, 10, 13)


def test_band_keys_match_datasketch_buckets_on_real_signatures():
    """Equal band keys <=> datasketch puts both texts into the same bucket of that band."""
    config = MinHashConfig()
    bands, rows = config.lsh_params
    texts = _varied_texts(200, seed=5)
    rng = random.Random(5)
    texts += [t[: len(t) - rng.randint(0, 2)] for t in texts[:100]]  # near copies
    signatures = MinHasher(config).signatures(texts)
    index = MinHashLSH(
        threshold=config.threshold, num_perm=config.num_perm, weights=config.lsh_weights
    )
    for i, signature in enumerate(signatures):
        index.insert(i, MinHash(hashvalues=signature, scheme=config.scheme))
    keys = [band_keys(signature, bands, rows) for signature in signatures]
    for i in range(0, len(texts), 3):
        for j in index.query(MinHash(hashvalues=signatures[i], scheme=config.scheme)):
            assert set(keys[i]) & set(keys[j])
        for j in range(len(texts)):
            if set(keys[i]) & set(keys[j]):
                assert i in index.query(MinHash(hashvalues=signatures[j], scheme=config.scheme))


def test_estimated_jaccard_matches_datasketch_and_tracks_exact_jaccard():
    config = MinHashConfig()
    hasher = MinHasher(config)
    rng = random.Random(6)
    words = [f"w{i}" for i in range(2000)]
    for _ in range(20):
        a = [rng.choice(words) for _ in range(150)]
        b = [w if rng.random() > 0.1 else rng.choice(words) for w in a]
        sig_a, sig_b = hasher.signature(a), hasher.signature(b)
        reference = MinHash(hashvalues=sig_a, scheme=config.scheme).jaccard(
            MinHash(hashvalues=sig_b, scheme=config.scheme)
        )
        estimate = estimated_jaccard(sig_a, sig_b)
        assert estimate == reference
        assert abs(estimate - exact_jaccard(shingles(a, config), shingles(b, config))) < 0.15
    with pytest.raises(ValueError, match="lengths"):
        estimated_jaccard(np.zeros(3), np.zeros(4))


def test_exact_jaccard():
    assert exact_jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert exact_jaccard(["a", "a"], ["a"]) == 1.0
    assert exact_jaccard([], []) == 1.0
    assert exact_jaccard(["a"], []) == 0.0
