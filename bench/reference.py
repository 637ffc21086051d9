"""Reference deduplicator for the benchmark: what a user would write instead of digestflow.

One Python process, the same libraries, no Beam, no digestflow code (the issue's "naive
datasketch script"):

1. read every dump with a plain line loop (``gzip``/``bz2``/``lzma`` by extension), skip blank,
   header and date lines, and pair each title with the abstract after it (a line of at least
   ``ABSTRACT_CHARS`` characters; a title followed by another title is dropped);
2. keep one text per distinct lower-cased word sequence (exact copies are free, as in the
   pipeline);
3. sign each distinct text with ``datasketch.MinHash(num_perm, seed=1)`` (its default SHA-1
   hash, ``update_batch``) over word 3-shingles;
4. insert every signature into ``MinHashLSH(threshold, num_perm)`` (datasketch's default
   banding), query every signature, keep the candidates whose estimated Jaccard reaches the
   threshold, and union the kept pairs.

It writes nothing (the pipeline also writes Parquet) and keeps no dead letters, dates or
links. Run it as ``python -m bench.reference --input 'DIR/*.txt*' [--result FILE]``; it prints
(and optionally writes) a JSON summary with the wall seconds of each step, measured after
imports, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import bz2
import glob
import gzip
import json
import lzma
import re
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from datasketch import MinHash, MinHashLSH

NGRAM = 3
SEED = 1
ABSTRACT_CHARS = 200
HEADERS = {
    "new",
    "subscribe",
    "get trending papers in your email inbox!",
    "get trending papers in your email inbox once a day!",
    "byak and the research community",
}
DATE_LINE = re.compile(r"^[A-Z][a-z]{2,8}\.? \d{1,2}(, \d{4})?$")
WORD = re.compile(r"\w+")
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def input_files(patterns: Sequence[str]) -> list[str]:
    """Every file matched by ``patterns``, each once, sorted (like the pipeline's matching)."""
    return sorted({path for pattern in patterns for path in glob.glob(pattern)})


def read_records(paths: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(title, abstract) pairs of every dump, by a plain line loop."""
    for path in paths:
        opener = OPENERS.get(Path(path).suffix, open)
        with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
            title = None
            for raw in lines:
                line = raw.strip()
                if line.startswith("Subscribe") and len(line) > len("Subscribe"):
                    line = line[len("Subscribe") :]
                if not line or line.lower() in HEADERS or DATE_LINE.match(line):
                    continue
                if len(line) >= ABSTRACT_CHARS:
                    if title is not None:
                        yield title, line
                    title = None
                else:
                    title = line


def word_shingles(token_list: Sequence[str], n: int = NGRAM) -> list[bytes]:
    """Word n-grams joined by one space, UTF-8 encoded (a text shorter than n: the whole text)."""
    if len(token_list) < n:
        return [" ".join(token_list).encode("utf-8")] if token_list else []
    return [" ".join(token_list[i : i + n]).encode("utf-8") for i in range(len(token_list) - n + 1)]


def sign(text: str, num_perm: int) -> MinHash:
    signature = MinHash(num_perm=num_perm, seed=SEED)
    signature.update_batch(word_shingles(text.split()))
    return signature


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MiB, or None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def current_rss_mib() -> float | None:
    """Resident memory now (after imports: the baseline a run's peak starts from)."""
    rss = _status_mib("VmRSS")
    return round(rss, 1) if rss is not None else None


def peak_rss_mib() -> float:
    """Peak resident memory of this process since it was exec'd, plus its waited-for children.

    ``VmHWM`` (Linux) belongs to the address space created by exec. ``getrusage`` of the child
    as seen by its parent would not do: on Linux it also counts the parent's memory at fork
    time (the child shares or copies it until exec), so a big parent inflates every child.
    """
    own = _status_mib("VmHWM")
    if own is None:  # not Linux: ru_maxrss (KiB on Linux/BSD, bytes on macOS)
        scale = 2**20 if sys.platform == "darwin" else 2**10
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(max(own, children), 1)


class UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def similar_pairs(
    signatures: Sequence[MinHash], threshold: float, num_perm: int
) -> list[tuple[int, int]]:
    """Verified LSH pairs (i, j), i < j, of the distinct texts."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for key, signature in enumerate(signatures):
        lsh.insert(key, signature)
    pairs = []
    for key, signature in enumerate(signatures):
        for other in lsh.query(signature):
            if other > key and signature.jaccard(signatures[other]) >= threshold:
                pairs.append((key, other))
    return pairs


def deduplicate(patterns: Sequence[str], threshold: float, num_perm: int) -> dict:
    """Run the whole reference; returns counts and per-step wall seconds."""
    rss_at_start = current_rss_mib()
    started = time.perf_counter()
    text_of_record: list[int] = []
    text_ids: dict[str, int] = {}
    for title, abstract in read_records(input_files(patterns)):
        text = " ".join(WORD.findall(f"{title} {abstract}".lower()))
        text_of_record.append(text_ids.setdefault(text, len(text_ids)))
    parsed = time.perf_counter()
    signatures = [sign(text, num_perm) for text in text_ids]
    signed = time.perf_counter()
    pairs = similar_pairs(signatures, threshold, num_perm)
    linked = time.perf_counter()
    components = UnionFind(len(signatures))
    for a, b in pairs:
        components.union(a, b)
    clusters = len({components.find(t) for t in text_of_record})
    finished = time.perf_counter()
    return {
        "records": len(text_of_record),
        "distinct_texts": len(text_ids),
        "similar_pairs": len(pairs),
        "clusters": clusters,
        "seconds": {
            "parse": round(parsed - started, 3),
            "sign": round(signed - parsed, 3),
            "lsh": round(linked - signed, 3),
            "components": round(finished - linked, 3),
        },
        "wall_seconds": round(finished - started, 3),
        "rss_at_start_mib": rss_at_start,
        "peak_rss_mib": peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", required=True, help="Glob (repeatable).")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num_perm", type=int, default=128)
    parser.add_argument("--result", default=None, help="Also write the JSON summary here.")
    args = parser.parse_args(argv)
    summary = deduplicate(args.input, args.threshold, args.num_perm)
    text = json.dumps(summary)
    if args.result:
        Path(args.result).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
