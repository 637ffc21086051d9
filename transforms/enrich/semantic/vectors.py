"""Blocking keys from embeddings: random-hyperplane LSH (SimHash) on the canonicals' vectors.

A revision that rewords its title and coins no name shares no exact blocking key with its
first version (:mod:`.evidence`), yet its embedding stays close (cosine 0.86-0.96 on the
hand-written pairs). Each of ``bands`` bands takes the signs of ``bits`` projections onto
fixed random directions; two unit vectors at angle theta agree on one sign with probability
``1 - theta/pi``, so they share a band key with probability ``1 - (1 - (1 - theta/pi)^bits)
^bands``: the recall curve of docs/benchmarks.md (section *semantic*). A band key is one
more blocking key of the candidate (``v:`` + band + code), so vector buckets go through the
merge's bucket machinery unchanged: pairs inside a bucket of at most ``max_bucket``
canonicals, verified by the whole tiered rule; a hotter bucket is skipped. Keys are stored
with the candidate's other names in ``paper_names``, which is how an update finds the old
canonicals a new one can reach.

The hyperplanes are a pure function of (dimension, bits, bands, seed), so every worker and
every run draws the same ones. They pass through the origin: centring on a mean vector
spreads the buckets (sentence embeddings of ML abstracts share one direction: mean pairwise
cosine 0.42 on the seed papers) but lost 3-6 % of the revisions measured, and a shipped mean
would tie the keys to one model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VECTOR_KEY = "v:"


@dataclass(frozen=True)
class VectorLSH:
    """How embeddings become band keys; ``bands == 0`` turns vector blocking off (the
    pipeline's default, :class:`.rule.SemanticConfig`). The defaults here are the measured
    setting to turn on (``--semantic_vector_bands 128``)."""

    bits: int = 20
    bands: int = 128
    seed: int = 20261204

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 32:
            raise ValueError(f"vector LSH bits per band must be in 1..32, got {self.bits}")
        if not 0 <= self.bands <= 4096:
            raise ValueError(f"vector LSH bands must be in 0..4096, got {self.bands}")

    @property
    def enabled(self) -> bool:
        return self.bands > 0

    def collision_probability(self, cosine: float) -> float:
        """Chance that two unit vectors with this cosine share at least one band key."""
        agree = 1.0 - float(np.arccos(np.clip(cosine, -1.0, 1.0))) / np.pi
        return 1.0 - (1.0 - agree**self.bits) ** self.bands

    def settings(self) -> dict[str, int]:
        return {"bits": self.bits, "bands": self.bands, "seed": self.seed}


@functools.lru_cache(maxsize=8)
def hyperplanes(dim: int, lsh: VectorLSH) -> np.ndarray:
    """(bands * bits, dim) normal directions, float64 so a sign does not hang on float32
    rounding of the projection."""
    rng = np.random.default_rng(lsh.seed)
    planes = rng.standard_normal((lsh.bands * lsh.bits, dim))
    planes.flags.writeable = False
    return planes


def band_codes(vectors: np.ndarray, lsh: VectorLSH) -> np.ndarray:
    """(n, bands) uint32 codes: bit j of band b is the sign of the projection onto plane
    ``b * bits + j``."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if not lsh.enabled or len(vectors) == 0:
        return np.zeros((len(vectors), lsh.bands), dtype=np.uint32)
    return _codes_of(_signs(vectors, lsh), lsh)


def _signs(vectors: np.ndarray, lsh: VectorLSH) -> np.ndarray:
    """(n, bands * bits) signs of the projections (float64: see :func:`hyperplanes`)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    return vectors @ hyperplanes(vectors.shape[1], lsh).T > 0.0


def _codes_of(signs: np.ndarray, lsh: VectorLSH) -> np.ndarray:
    weights = np.left_shift(np.uint64(1), np.arange(lsh.bits, dtype=np.uint64))
    codes = signs.reshape(len(signs), lsh.bands, lsh.bits).astype(np.uint64) @ weights
    return codes.astype(np.uint32)


def vector_keys_of(codes: np.ndarray) -> frozenset[str]:
    """The blocking keys of one row of :func:`band_codes`."""
    return frozenset(f"{VECTOR_KEY}{band:x}.{int(code):x}" for band, code in enumerate(codes))


def vector_keys(vectors: Sequence[np.ndarray] | np.ndarray, lsh: VectorLSH) -> list[frozenset[str]]:
    """The band keys of each vector (empty sets when vector blocking is off)."""
    if not lsh.enabled:
        return [frozenset() for _ in range(len(vectors))]
    return [vector_keys_of(row) for row in band_codes(np.asarray(vectors), lsh)]


def is_vector_key(key: str) -> bool:
    return key.startswith(VECTOR_KEY)


# Bits of the sketch a vector bucket's members carry (the signs of the first planes): their
# Hamming distance estimates the angle well enough to drop, inside the bucket, the pairs far
# below the rule's lowest bar, so the pairs shipped to exact verification stay few.
SKETCH_BITS = 1024
# Estimates this many standard deviations below a bar still pass it.
SKETCH_SIGMAS = 4.0


def sketch(vector: np.ndarray, lsh: VectorLSH) -> int:
    """The signs of the vector's projections onto the first SKETCH_BITS planes, as one int."""
    return _sketch_of(_signs(vector, lsh)[0])


def blocking(vector: np.ndarray, lsh: VectorLSH) -> tuple[frozenset[str], int]:
    """(band keys, sketch) of one vector, from one projection."""
    signs = _signs(vector, lsh)
    return vector_keys_of(_codes_of(signs, lsh)[0]), _sketch_of(signs[0])


def _sketch_of(signs: np.ndarray) -> int:
    return int.from_bytes(np.packbits(signs[:SKETCH_BITS]).tobytes(), "big")


def sketch_bits(lsh: VectorLSH) -> int:
    return min(SKETCH_BITS, lsh.bits * lsh.bands)


def sketch_cosine(a: int, b: int, bits: int) -> float:
    """The cosine two sketches estimate (SimHash: angle = pi x the share of differing signs)."""
    return float(np.cos(np.pi * (a ^ b).bit_count() / bits))


def sketch_floor(bar: float, bits: int) -> float:
    """The lowest estimate a pair with cosine ``bar`` gets, SKETCH_SIGMAS deviations down."""
    share = float(np.arccos(bar)) / np.pi
    spread = np.sqrt(share * (1.0 - share) / bits)
    return float(np.cos(np.pi * min(1.0, share + SKETCH_SIGMAS * spread)))
