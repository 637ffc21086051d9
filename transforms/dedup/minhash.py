"""MinHash signatures of texts, as pure numpy functions (no Beam here).

Why not just ``datasketch.MinHash.update_batch``: it hashes every shingle in a Python loop with
SHA1, which caps signing at ~1.2k texts/s. Here the *same* MinHash semantics run over a
vectorizable shingle hash, and the guarantee that keeps us honest is tested bit for bit:

    MinHasher(config).signature(tokens)
        == datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash, scheme=config.scheme)
           .update_batch(s.encode("utf-8") for s in shingles(tokens, config)).hashvalues

The shingle hash is a polynomial hash over Unicode code points modulo 2**64, finished with the
MurmurHash3 64-bit finalizer and cut to 32 bits. A polynomial hash of any substring follows
from prefix sums of the whole text, so every shingle of a text (word n-grams *and* character
n-grams, which are both substrings of the space-joined tokens) is hashed with a handful of numpy
operations, in one pass per batch of texts. It is deterministic across processes and machines
(never Python's ``hash()``). It is not a cryptographic hash: it resists accidents, not
adversaries, which is all near-duplicate detection needs.

Permutation schemes follow the installed datasketch (>= 2.0): ``"affine32"`` (its default:
fmix32 pre-mix, then ``a*h + b mod 2**32``, values stored as uint32) or ``"legacy"``
(``((a*h + b) % (2**61 - 1)) & (2**32 - 1)``, stored as uint64, the only scheme before 2.0).
Signatures carry the scheme's dtype, so they are bit-identical to datasketch's ``hashvalues``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SHINGLE_KINDS = ("word", "char")
DEFAULT_NGRAM = {"word": 3, "char": 5}
SCHEMES = ("affine32", "legacy")

# Polynomial hash base: odd, so it is invertible modulo 2**64 (prefix sums need the inverse).
_BASE = 0x9E3779B97F4A7C15
_BASE_INV = pow(_BASE, -1, 1 << 64)
_MASK64 = (1 << 64) - 1

# datasketch's constants (datasketch.minhash), repeated so the arithmetic here is explicit.
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH32 = np.uint64((1 << 32) - 1)

# Rows (shingles) of the shingle x permutation matrix built at once by MinHasher.signatures:
# bounds temporary memory to ~ _CHUNK_ROWS * num_perm * 8 bytes (16 MB at 128 permutations).
_CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class MinHashConfig:
    """How texts become MinHash signatures, and the LSH banding implied by ``threshold``.

    ``ngram`` defaults to 3 for word shingles and 5 for character shingles.
    """

    num_perm: int = 128
    seed: int = 1
    shingle: str = "word"
    ngram: int | None = None
    threshold: float = 0.8
    scheme: str = "affine32"
    # (false-positive, false-negative) weights of datasketch's banding rule. Every candidate
    # pair is verified against ``threshold`` afterwards, so a false positive costs one check
    # while a false negative loses a duplicate: favour recall. Measured (docs/benchmarks.md):
    # equal weights (9 bands x 13 rows) catch a 0.80-similar pair with p=0.40, these
    # (14 x 9) with p=0.87.
    lsh_weights: tuple[float, float] = (0.1, 0.9)

    def __post_init__(self) -> None:
        if self.shingle not in SHINGLE_KINDS:
            raise ValueError(f"shingle must be one of {SHINGLE_KINDS}, got {self.shingle!r}")
        if self.ngram is None:
            object.__setattr__(self, "ngram", DEFAULT_NGRAM[self.shingle])
        if isinstance(self.ngram, bool) or not isinstance(self.ngram, int) or self.ngram < 1:
            raise ValueError(f"ngram must be a positive integer, got {self.ngram!r}")
        if isinstance(self.num_perm, bool) or not isinstance(self.num_perm, int):
            raise ValueError(f"num_perm must be an integer, got {self.num_perm!r}")
        if not 2 <= self.num_perm <= 4096:
            raise ValueError(f"num_perm must be in [2, 4096] (LSH needs >= 2), got {self.num_perm}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32) (numpy RandomState), got {self.seed}")
        if not isinstance(self.threshold, int | float) or not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")

    @property
    def lsh_params(self) -> tuple[int, int]:
        """(bands, rows) exactly as ``datasketch.MinHashLSH(threshold, num_perm, weights=
        lsh_weights)`` picks them.

        datasketch minimizes the weighted integrated false positive and false negative
        probabilities of the banding S-curve; ``bands * rows`` may be < ``num_perm``, in which
        case the trailing positions take part in verification only.
        """
        fp, fn = self.lsh_weights
        return _optimal_lsh_params(float(self.threshold), self.num_perm, float(fp), float(fn))


@functools.lru_cache(maxsize=64)
def _optimal_lsh_params(
    threshold: float, num_perm: int, fp_weight: float, fn_weight: float
) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param  # private, but it *is* datasketch's rule

    bands, rows = _optimal_param(threshold, num_perm, fp_weight, fn_weight)
    return int(bands), int(rows)


# --------------------------------------------------------------------------------- shingles


def shingles(token_list: Sequence[str], config: MinHashConfig) -> list[str]:
    """Word n-grams (tokens joined by one space) or character n-grams of the joined tokens.

    A text shorter than n yields one shingle, the whole text, so short texts still compare;
    an empty text yields none. Shingles may repeat (MinHash only sees the set).
    """
    n = config.ngram
    assert n is not None
    token_list = _without_blanks(token_list)
    if config.shingle == "word":
        if not token_list:
            return []
        if len(token_list) < n:
            return [" ".join(token_list)]
        return [" ".join(token_list[i : i + n]) for i in range(len(token_list) - n + 1)]
    text = " ".join(token_list)
    if not text:
        return []
    if len(text) < n:
        return [text]
    return [text[i : i + n] for i in range(len(text) - n + 1)]


def _without_blanks(token_list: Sequence[str]) -> Sequence[str]:
    """Drop empty tokens: they carry no text and would only create empty shingles."""
    return [t for t in token_list if t] if "" in token_list else token_list


# ------------------------------------------------------------------------------ shingle hash


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (an avalanching bijection), element-wise on uint64."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def shingle_hash(shingle: bytes | str) -> int:
    """32-bit hash of one shingle (UTF-8 bytes or str); usable as datasketch's ``hashfunc``.

    Scalar reference for :func:`shingle_hashes`: Horner's rule over code points modulo 2**64,
    then fmix64, upper 32 bits. Written independently of the vectorized path on purpose.
    """
    text = shingle.decode("utf-8", "surrogatepass") if isinstance(shingle, bytes) else shingle
    h = 0
    for char in text:
        h = (h * _BASE + ord(char)) & _MASK64
    return _fmix64_int(h) >> 32


class _Powers:
    """Growable tables of BASE**k and BASE**-k modulo 2**64 (uint64 arithmetic wraps)."""

    def __init__(self) -> None:
        one = np.ones(1, dtype=np.uint64)
        self.tables = (one, one)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self.tables  # one attribute, swapped whole: safe under concurrent readers
        if len(tables[0]) < n:
            size = max(n, 2 * len(tables[0]), 4096)
            pw = np.full(size, _BASE, dtype=np.uint64)
            inv = np.full(size, _BASE_INV, dtype=np.uint64)
            pw[0] = inv[0] = 1
            tables = self.tables = (np.cumprod(pw), np.cumprod(inv))
        return tables


_POWERS = _Powers()


def _substring_hashes(text: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hashes of ``text[starts[k]:ends[k]]`` (non-empty), as 32-bit values in uint64.

    With G[k] = sum_{t<k} c_t * BASE**-t, the polynomial hash of text[i:j] is
    sum_{i<=t<j} c_t * BASE**(j-1-t) = BASE**(j-1) * (G[j] - G[i])  (mod 2**64),
    independent of where the substring sits, so texts can be concatenated freely.
    """
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    pw, inv = _POWERS.upto(len(codes) + 1)
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes.astype(np.uint64) * inv[: len(codes)], out=prefix[1:])
    poly = (prefix[ends] - prefix[starts]) * pw[ends - 1]
    return _fmix64(poly) >> np.uint64(32)


def _shingle_bounds(
    token_lists: Sequence[Sequence[str]], config: MinHashConfig
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate texts and locate every shingle in the concatenation.

    Returns (concatenation, starts, ends, counts) where ``counts[k]`` is the number of shingles
    of ``token_lists[k]`` (0 for an empty text). Texts are joined with "\\n" and shingles are
    located by offsets, so no shingle spans two texts whatever characters the tokens contain.
    """
    n = config.ngram
    assert n is not None
    token_lists = [_without_blanks(t) for t in token_lists]
    nonempty = [t for t in token_lists if t]
    token_counts = np.fromiter(
        (len(t) for t in token_lists), dtype=np.int64, count=len(token_lists)
    )
    text = "\n".join(" ".join(t) for t in nonempty)
    lengths = np.fromiter(  # map/chain iterate in C; a generator here was a hot spot
        map(len, itertools.chain.from_iterable(nonempty)),
        dtype=np.int64,
        count=int(token_counts.sum()),
    )
    # Every token is followed by exactly one separator (" " inside a text, "\n" between texts).
    tok_starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=tok_starts[1:])
    tok_ends = tok_starts + lengths
    ne_counts = token_counts[token_counts > 0]
    first_tok = np.zeros(len(ne_counts), dtype=np.int64)
    np.cumsum(ne_counts[:-1], out=first_tok[1:])
    last_tok = first_tok + ne_counts - 1

    if config.shingle == "word":
        per_text = np.maximum(ne_counts - n + 1, 1)
        local = _local_index(per_text)
        first = np.repeat(first_tok, per_text) + local
        last = np.minimum(first + n - 1, np.repeat(last_tok, per_text))
        starts, ends = tok_starts[first], tok_ends[last]
    else:
        text_start = tok_starts[first_tok]
        text_len = tok_ends[last_tok] - text_start
        per_text = np.maximum(text_len - n + 1, 1)
        starts = np.repeat(text_start, per_text) + _local_index(per_text)
        ends = np.minimum(starts + n, np.repeat(text_start + text_len, per_text))

    counts = np.zeros(len(token_lists), dtype=np.int64)
    counts[token_counts > 0] = per_text
    return text, starts, ends, counts


def _local_index(per_group: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for group sizes c0, c1, ... (all >= 1)."""
    total = int(per_group.sum())
    offsets = np.zeros(len(per_group), dtype=np.int64)
    np.cumsum(per_group[:-1], out=offsets[1:])
    return np.arange(total, dtype=np.int64) - np.repeat(offsets, per_group)


def shingle_hashes(token_list: Sequence[str], config: MinHashConfig) -> np.ndarray:
    """Vectorized ``[shingle_hash(s) for s in shingles(token_list, config)]`` (uint64 array)."""
    if not token_list:
        return np.zeros(0, dtype=np.uint64)
    text, starts, ends, _ = _shingle_bounds([token_list], config)
    return _substring_hashes(text, starts, ends)


# ----------------------------------------------------------------------------- signatures


class MinHasher:
    """Signs token lists with datasketch's permutations for ``(num_perm, seed, scheme)``.

    Pickles as its config only (a few bytes); the permutations are rebuilt on unpickling,
    which is how Beam ships it to workers.
    """

    def __init__(self, config: MinHashConfig | None = None) -> None:
        from datasketch import MinHash

        self.config = config or MinHashConfig()
        reference = MinHash(self.config.num_perm, self.config.seed, scheme=self.config.scheme)
        a, b = reference.permutations
        self.dtype = reference.hashvalues.dtype
        self.max_hash = reference.hashvalues[0]  # datasketch's "empty" sentinel
        self._a = np.ascontiguousarray(a, dtype=self.dtype)
        self._b = np.ascontiguousarray(b, dtype=self.dtype)

    def __reduce__(self):
        return (MinHasher, (self.config,))

    @property
    def num_perm(self) -> int:
        return self.config.num_perm

    def _permuted(self, hashes: np.ndarray) -> np.ndarray:
        """(num_perm, len(hashes)) permuted values, exactly datasketch's update_batch math.

        Permutation-major, so the per-text minimum runs along contiguous memory.
        """
        a, b = self._a.reshape(-1, 1), self._b.reshape(-1, 1)
        if self.config.scheme == "legacy":
            hv = hashes.astype(np.uint64)
            return ((a * hv + b) % _MERSENNE_PRIME) & _MAX_HASH32
        hv = hashes.astype(np.uint32)
        hv = hv ^ (hv >> np.uint32(16))
        hv = hv * np.uint32(0x85EBCA6B)
        hv = hv ^ (hv >> np.uint32(13))
        hv = hv * np.uint32(0xC2B2AE35)
        hv = hv ^ (hv >> np.uint32(16))
        out = a * hv
        out += b
        return out

    def empty_signature(self) -> np.ndarray:
        return np.full(self.num_perm, self.max_hash, dtype=self.dtype)

    def signature(self, token_list: Sequence[str]) -> np.ndarray:
        """MinHash signature of one text; all ``max_hash`` for an empty text (like datasketch)."""
        hashes = shingle_hashes(token_list, self.config)
        if len(hashes) == 0:
            return self.empty_signature()
        return self._permuted(hashes).min(axis=1)

    def signatures(self, token_lists: Iterable[Sequence[str]]) -> np.ndarray:
        """Signatures of many texts, shape (len, num_perm): one numpy pass per chunk of texts."""
        token_lists = list(token_lists)
        out = np.empty((len(token_lists), self.num_perm), dtype=self.dtype)
        start = 0
        while start < len(token_lists):
            stop, rows = start, 0
            # Shingle count <= token count (word) or char count (char): cheap upper bound.
            while stop < len(token_lists) and (rows == 0 or rows < _CHUNK_ROWS):
                tl = token_lists[stop]
                rows += len(tl) if self.config.shingle == "word" else sum(map(len, tl)) + len(tl)
                stop += 1
            out[start:stop] = self._sign_chunk(token_lists[start:stop])
            start = stop
        return out

    def _sign_chunk(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        out = np.empty((len(token_lists), self.num_perm), dtype=self.dtype)
        out[:] = self.max_hash
        text, starts, ends, counts = _shingle_bounds(token_lists, self.config)
        if len(starts) == 0:
            return out
        permuted = self._permuted(_substring_hashes(text, starts, ends))
        nonempty = counts > 0
        offsets = np.zeros(int(nonempty.sum()), dtype=np.int64)
        np.cumsum(counts[nonempty][:-1], out=offsets[1:])
        out[nonempty] = np.minimum.reduceat(permuted, offsets, axis=1).T
        return out


# ------------------------------------------------------------------------------ LSH & Jaccard


Signature = np.ndarray | bytes

# Fixed odd 64-bit multipliers, one per row position of a band (the same for every band),
# drawn once from a seeded generator: band hashes never depend on the process or machine.
_BAND_MULTIPLIERS = np.random.default_rng(0x0BA4D5).integers(
    1, 1 << 63, size=4096, dtype=np.uint64, endpoint=False
) | np.uint64(1)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the 64-bit output."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(texts x bands) uint64: a 64-bit hash of each band's slice of each signature.

    Vectorized over a batch (hashing slices one by one with a byte digest cost more than
    signing). Equal slices give equal hashes; different slices collide with probability
    about 2**-32 per pair and band at worst (a random linear form, then mixed), and a
    spurious candidate is still verified before it links anything.
    """
    signatures = np.atleast_2d(signatures)
    if bands * rows > signatures.shape[1]:
        raise ValueError(
            f"{bands} bands x {rows} rows exceed signature length {signatures.shape[1]}"
        )
    if rows > len(_BAND_MULTIPLIERS):
        raise ValueError(f"rows must be <= {len(_BAND_MULTIPLIERS)}, got {rows}")
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(-1, bands, rows)
    linear = (values * _BAND_MULTIPLIERS[:rows]).sum(axis=2, dtype=np.uint64)
    salt = np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return _mix64(linear + salt)


def band_keys(signature: Signature, bands: int, rows: int) -> list[tuple[int, int]]:
    """(band index, 64-bit hash of the band's slice) for each of ``bands`` bands of ``rows``.

    Two signatures share key i exactly when their slices i are equal (up to the hash
    collisions bounded in :func:`band_hashes`). Values are hashed as integers, so keys do
    not depend on the signature dtype (packed or not) or the machine.
    """
    hashes = band_hashes(as_signature(signature)[None, :], bands, rows)[0]
    return [(band, int(value)) for band, value in enumerate(hashes)]


def pack_signature(signature: np.ndarray) -> bytes:
    """A signature as it travels between pipeline stages: uint32 little-endian bytes.

    Lossless for every scheme (``affine32`` values are uint32; ``legacy`` values are masked
    to 32 bits), and Beam's coder copies bytes where it would pickle an array: pickling
    signatures was a measured cost of every shuffle that carries them.
    """
    return np.asarray(signature).astype("<u4", copy=False).tobytes()


def as_signature(value: Signature) -> np.ndarray:
    """An array view of a signature, packed (:func:`pack_signature`) or not."""
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<u4")
    return np.asarray(value)


def estimated_jaccard(sig_a: Signature, sig_b: Signature) -> float:
    """Fraction of equal positions: datasketch's ``MinHash.jaccard`` on raw signatures
    (arrays, or packed by :func:`pack_signature`)."""
    a, b = as_signature(sig_a), as_signature(sig_b)
    if len(a) != len(b):
        raise ValueError(f"signature lengths differ: {len(a)} != {len(b)}")
    return float(np.count_nonzero(a == b)) / len(a)


def exact_jaccard(shingles_a: Iterable[str], shingles_b: Iterable[str]) -> float:
    """|A & B| / |A | B| of the shingle sets; two empty texts count as identical (1.0)."""
    a, b = set(shingles_a), set(shingles_b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
