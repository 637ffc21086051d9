"""The paper index behind ``digestflow similar``: every canonical paper's embedding of one
version as a float32 matrix on local disk, memory-mapped by each search.

DuckDB answers ``similar`` exactly, but it decodes the whole embedding column from Parquet on
every query (~1.5 GB at a million papers), and no vector-search extension can be installed
offline. A search therefore multiplies the query by the memory-mapped matrix, keeps the
papers that can be in the top ``k`` (every score within :data:`SLACK` of the k-th: the SQL
orders by the cosine rounded to 4 places, then by ``record_id``, and DuckDB's float32 sums
differ from numpy's in the 7th place), and DuckDB ranks just those with the same expression
over their stored vectors, passed in from the index (reading them from Parquet would decode
the column's pages again). The answer is the full scan's, row for row; only its cost changes
(docs/benchmarks.md, section *search*).

The index is a cache, not part of the output: it lives under ``~/.cache/digestflow/search/``
(readers never write to an output), one directory per output and version, named by what the
version's records and clusters files are (root, paths, sizes, mtimes), so a new version, a
rewritten file or another output never reuses it. It is built on the first search of a
version, in batches (memory: one batch of vectors, not the table), written under a temporary
name and renamed whole; a damaged one is rebuilt; building one removes that output's older
ones. Where the cache cannot be written the search scans as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import numpy as np

from beam_jobs.store.tables import deletes_name
from transforms.enrich.encoders import default_cache_dir

# Scores this close to the k-th best may still rank above it in the SQL (see the module doc).
SLACK = 2e-4
BATCH_ROWS = 65_536
VECTORS, IDS = "vectors.npy", "ids.npy"
INDEXED_PAPERS_SQL = "SELECT record_id, embedding FROM papers WHERE embedding IS NOT NULL"


def search_cache_dir() -> Path:
    return default_cache_dir() / "search"


def index_name(output: str, root: str, files: dict[str, list[str]]) -> str:
    """``<output>-<content>``: 16 hex digits each, of the output's path and of the files the
    version's papers view reads."""
    listed = []
    tables = ("records", "clusters")
    for table in (*tables, *map(deletes_name, tables)):
        for path in sorted(files.get(table, [])):
            stat = os.stat(path) if "://" not in path else None
            listed.append([path, stat and stat.st_size, stat and stat.st_mtime_ns])
    content = json.dumps([root, listed]).encode("utf-8")
    return f"{_digest(os.path.abspath(output).encode('utf-8'))}-{_digest(content)}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class PaperIndex:
    """The memory-mapped vectors and record ids of one version's canonical papers."""

    def __init__(self, directory: Path, dim: int) -> None:
        self.vectors = np.load(directory / VECTORS, mmap_mode="r")
        self.ids = np.load(directory / IDS, mmap_mode="r")
        if self.vectors.ndim != 2 or self.vectors.shape[1] != dim:
            raise ValueError(f"vectors of shape {self.vectors.shape}, not (n, {dim})")
        if self.ids.shape != (self.vectors.shape[0],):
            raise ValueError(f"{self.ids.shape[0]} ids for {self.vectors.shape[0]} vectors")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def candidates(self, vector: np.ndarray, k: int) -> tuple[list[str], list[list[float]]]:
        """Record ids and stored vectors of every paper that can be among the top ``k`` of
        the SQL ranking (the vectors exactly as stored: float32 values are exact in a
        Python float)."""
        if len(self) <= k:
            keep = np.arange(len(self))
        else:
            scores = self.vectors @ np.asarray(vector, dtype=np.float32)
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = np.flatnonzero(scores >= kth - SLACK)
        return (
            [self.ids[i].decode("utf-8") for i in keep],
            [self.vectors[i].tolist() for i in keep],
        )


def open_index(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    dim: int,
    cache_dir: Path | None = None,
) -> PaperIndex | None:
    """The index ``name``, built from ``connection``'s papers view if absent or damaged;
    None when the cache cannot be written."""
    cache = Path(cache_dir) if cache_dir is not None else search_cache_dir()
    directory = cache / name
    if directory.is_dir():
        try:
            return PaperIndex(directory, dim)
        except (OSError, ValueError, EOFError):
            shutil.rmtree(directory, ignore_errors=True)  # damaged: build it again
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _build(connection, cache, name, dim)
        return PaperIndex(directory, dim)
    except OSError:
        return None


def _build(connection: duckdb.DuckDBPyConnection, cache: Path, name: str, dim: int) -> None:
    ((count,),) = connection.execute(f"SELECT count(*) FROM ({INDEXED_PAPERS_SQL})").fetchall()
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
    try:
        vectors = np.lib.format.open_memmap(
            scratch / VECTORS, mode="w+", dtype=np.float32, shape=(count, dim)
        )
        ids: list[bytes] = []
        reader = connection.sql(INDEXED_PAPERS_SQL).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            flat = batch.column(1).flatten().to_numpy(zero_copy_only=False)
            vectors[len(ids) : len(ids) + batch.num_rows] = flat.reshape(-1, dim)
            ids.extend(i.encode("utf-8") for i in batch.column(0).to_pylist())
        if len(ids) != count:
            raise OSError(f"read {len(ids)} papers for an index of {count}")
        vectors.flush()
        del vectors
        np.save(scratch / IDS, np.array(ids, dtype=f"S{max(map(len, ids), default=1)}"))
        try:
            os.rename(scratch, cache / name)
        except OSError:
            if not (cache / name).is_dir():  # else another search built it meanwhile
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    output_prefix = name.split("-", 1)[0] + "-"
    for other in cache.iterdir():  # this output's indexes of earlier versions
        if other.name.startswith(output_prefix) and other.name != name and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
