"""``similar`` through the paper index (beam_jobs/query/search.py): the same rows as the full
DuckDB scan, on outputs published the way a detached job's are (bench/search.py builds them),
and an index that is rebuilt when damaged and replaced when the version changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from beam_jobs.query import catalog, search
from bench.search import build_output
from transforms.schema import EMBEDDING_DIM

PAPERS = 600


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tied(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Papers whose vectors repeat (every 7th is the same one, the rest come in pairs) and
    queries that tie many of them, so the order among equal cosines decides the top k."""
    rng = np.random.default_rng(5)
    base = unit(rng.standard_normal((PAPERS // 2, EMBEDDING_DIM)))
    vectors = np.repeat(base, 2, axis=0)
    vectors[::7] = base[0]
    output = tmp_path_factory.mktemp("search") / "out"
    build_output(output, papers=PAPERS, seed=3, vectors=vectors)
    return output, vectors


def queries(vectors: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(9)
    return [
        vectors[0],  # ties with every 7th paper
        vectors[10],
        unit(vectors[0] + vectors[10]),  # equal cosine to two groups
        *unit(rng.standard_normal((3, EMBEDDING_DIM))),
    ]


@pytest.mark.parametrize("k", [1, 3, 10, 150, PAPERS + 5])
def test_indexed_search_returns_the_full_scans_rows(tied, tmp_path: Path, k: int) -> None:
    output, vectors = tied
    for vector in queries(vectors):
        scan = catalog.similar(str(output), vector, k, use_index=False)
        assert catalog.similar(str(output), vector, k, cache_dir=tmp_path) == scan
        assert len(scan[1]) == min(k, PAPERS)


def test_candidates_hold_every_paper_within_the_slack_of_the_kth(tied, tmp_path: Path) -> None:
    output, vectors = tied
    catalog.similar(str(output), vectors[0], 3, cache_dir=tmp_path)
    (directory,) = [d for d in tmp_path.iterdir() if not d.name.startswith(".")]
    index = search.PaperIndex(directory, EMBEDDING_DIM)
    assert len(index) == PAPERS
    ids, stored = index.candidates(vectors[0], 3)
    # ~PAPERS / 7 papers share the query's vector: all of them can rank in the top 3
    assert len(ids) >= PAPERS // 7
    assert np.array_equal(np.asarray(stored, dtype=np.float32)[0], vectors[0])


def test_the_index_is_built_once_rebuilt_when_damaged_and_replaced_by_a_new_version(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    first = unit(rng.standard_normal((50, EMBEDDING_DIM)))
    output, cache = tmp_path / "out", tmp_path / "cache"
    build_output(output, papers=50, seed=2, vectors=first)
    expected = catalog.similar(str(output), first[4], 5, use_index=False)
    assert catalog.similar(str(output), first[4], 5, cache_dir=cache) == expected
    (built,) = list(cache.iterdir())
    stamp = (built / search.VECTORS).stat().st_mtime_ns
    assert catalog.similar(str(output), first[4], 5, cache_dir=cache) == expected
    assert (built / search.VECTORS).stat().st_mtime_ns == stamp  # reused, not rebuilt

    (built / search.IDS).write_bytes(b"truncated")
    assert catalog.similar(str(output), first[4], 5, cache_dir=cache) == expected
    assert search.PaperIndex(built, EMBEDDING_DIM).vectors.shape == (50, EMBEDDING_DIM)

    # another output in the same cache keeps its own index
    other = tmp_path / "other"
    build_output(other, papers=20, seed=4)
    catalog.similar(str(other), first[4], 5, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    # the same directory rebuilt as a new version: its old index goes, the new answers
    second = unit(rng.standard_normal((30, EMBEDDING_DIM)))
    build_output(tmp_path / "rebuilt", papers=30, seed=2, vectors=second)
    shutil.rmtree(output)
    (tmp_path / "rebuilt").rename(output)
    expected = catalog.similar(str(output), second[1], 5, use_index=False)
    assert catalog.similar(str(output), second[1], 5, cache_dir=cache) == expected
    names = sorted(d.name for d in cache.iterdir())
    assert len(names) == 2 and built.name not in names


def test_an_unwritable_cache_falls_back_to_the_scan(tied, tmp_path: Path) -> None:
    output, vectors = tied
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    expected = catalog.similar(str(output), vectors[3], 4, use_index=False)
    assert catalog.similar(str(output), vectors[3], 4, cache_dir=blocker / "cache") == expected
