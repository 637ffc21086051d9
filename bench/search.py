"""``make bench`` section ``search``: ``digestflow similar`` latency at 1M papers (issue 15).

Claim under test: ``similar`` ranks every canonical paper of a large output by cosine to the
query in about a second after the model is loaded, with plain Parquet and DuckDB only (no
extension can be installed offline).

**Output.** Embedding a million texts takes days on a 2-core machine, so the output is built
directly: :data:`PAPERS` canonical records with the real records schema (titles from the
synthetic generator, made unique; seeded random unit vectors as embeddings, the model's 384
dimensions), one cluster each, written in row groups of
:data:`~transforms.schema.ROWS_PER_ROW_GROUP` rows as Beam's writer would, and published with
``digestflow publish`` (the command for a job that ran detached), so readers check its commit
record exactly as for a pipeline's output. Random vectors cost the search what real ones do
(a full scan; nothing here prunes by value).

**Measured**, in this process, a fresh DuckDB connection per query as the CLI makes it:
``catalog.similar`` (what ``digestflow similar`` runs once the query is embedded) against what
a user would write instead: the same DuckDB ``array_cosine_similarity`` over the ``papers``
view (``digestflow sql``), and numpy over the embedding column read with pyarrow. *first* is
the first query after the output is written (page cache warm, DuckDB cold), then the median
of :data:`REPEATS` with other queries.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_jobs import launcher
from beam_jobs.query import catalog, search
from beam_jobs.store import versions
from beam_jobs.store.tables import table_dir
from beam_jobs.synthetic import make_paper
from bench.common import Settings, emit, log, render_table
from transforms.schema import CLUSTERS_SCHEMA, EMBEDDING_DIM, RECORDS_SCHEMA, ROWS_PER_ROW_GROUP

PAPERS = 1_000_000
FILES = 8  # the pipeline's records table has a few files per bundle; 8 x 125k rows here
REPEATS = 5
K = 10
TEXTS = 2_000  # distinct generated texts, cycled (abstract bytes shape the files, not the scan)


def build_output(
    output: Path, papers: int = PAPERS, seed: int = 7, vectors: np.ndarray | None = None
) -> None:
    """A published output of ``papers`` canonical papers with random unit embeddings (or
    the rows of ``vectors``, one per paper)."""
    if versions.read_manifest(str(output)) is not None:
        return
    rng = np.random.default_rng(seed)
    texts = [make_paper(seed, f"p{i:06d}") for i in range(min(TEXTS, papers))]
    root = output / versions.version_name(1)
    records_dir, clusters_dir = (Path(table_dir(str(root), t)) for t in ("records", "clusters"))
    records_dir.mkdir(parents=True)
    clusters_dir.mkdir(parents=True)
    per_file = -(-papers // FILES)
    for part, start in enumerate(range(0, papers, per_file)):
        n = min(per_file, papers - start)
        ids = [f"{i:016x}" for i in range(start, start + n)]
        if vectors is None:
            part_vectors = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
            part_vectors /= np.linalg.norm(part_vectors, axis=1, keepdims=True)
        else:
            part_vectors = np.asarray(vectors[start : start + n], dtype=np.float32)
        picked = [texts[i % len(texts)] for i in range(start, start + n)]
        dates = pa.array([19_000 + i % 365 for i in range(start, start + n)], pa.int32())
        records = pa.table(
            {
                "record_id": ids,
                "source_file": [f"digest_{i % 365:03d}.txt" for i in range(start, start + n)],
                "record_index": pa.array(range(start, start + n), pa.int64()),
                "digest_date": dates.cast(pa.date32()),
                "title": [f"{p.title} ({start + i})" for i, p in enumerate(picked)],
                "abstract": [p.abstract for p in picked],
                "content_hash": ids,
                "code_urls": [[] for _ in range(n)],
                "cluster_id": ids,
                "is_canonical": pa.array([True] * n),
                "duplicate_of": pa.nulls(n, pa.string()),
                "similarity": pa.nulls(n, pa.float32()),
                "dup_kind": pa.nulls(n, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(part_vectors.ravel()), EMBEDDING_DIM
                ),
                "tags": [["llm"] for _ in range(n)],
                "tag_scores": pa.nulls(n, RECORDS_SCHEMA.field("tag_scores").type),
            },
            schema=RECORDS_SCHEMA,
        )
        pq.write_table(records, records_dir / f"part-{part:05d}.parquet", ROWS_PER_ROW_GROUP)
        clusters = pa.table(
            {
                "cluster_id": ids,
                "canonical_record_id": ids,
                "size": pa.array([1] * n, pa.int64()),
                "distinct_texts": pa.array([1] * n, pa.int64()),
                "first_digest_date": dates.cast(pa.date32()),
                "last_digest_date": dates.cast(pa.date32()),
            },
            schema=CLUSTERS_SCHEMA,
        )
        pq.write_table(clusters, clusters_dir / f"part-{part:05d}.parquet", ROWS_PER_ROW_GROUP)
    launcher.publish_translated_run(str(output))


def queries(n: int, seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
    return list(q / np.linalg.norm(q, axis=1, keepdims=True))


def view_sql(output: Path, vector: np.ndarray, k: int) -> list[tuple]:
    """What a user would type into ``digestflow sql``: the cosine over the papers view."""
    sql = (
        "SELECT title, cluster_size, first_seen, round(array_cosine_similarity(embedding, "
        f"{list(map(float, vector))}::FLOAT[{EMBEDDING_DIM}])::DOUBLE, 4) AS cosine "
        f"FROM papers ORDER BY cosine DESC LIMIT {k}"
    )
    return catalog.query(str(output), sql)[1]


def plain_numpy(output: Path, vector: np.ndarray, k: int) -> list[tuple]:
    """What a user would write with pyarrow and numpy: read the vectors, one matrix product."""
    root = versions.current_root(str(output))
    table = pq.read_table(
        table_dir(root, "records"), columns=["title", "is_canonical", "embedding"]
    ).filter(pa.compute.field("is_canonical"))
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    scores = flat.reshape(-1, EMBEDDING_DIM) @ vector
    top = np.argsort(-scores)[:k]
    titles = table.column("title")
    return [(titles[int(i)].as_py(), round(float(scores[i]), 4)) for i in top]


def timed(fn, *args) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


SCRIPT = "pyarrow + numpy script"


def measure(output: Path, cache: Path) -> list[list[Any]]:
    """In-process figures: the index build (the first search of a version), then the methods
    interleaved in a different order each round; *same*: the same cosines as the script."""
    shutil.rmtree(cache, ignore_errors=True)
    qs = queries(REPEATS + 1)
    build_s, _ = timed(catalog.similar, str(output), qs[0], K, cache)
    methods = {
        "digestflow similar (catalog.similar, indexed)": lambda v: catalog.similar(
            str(output), v, K, cache
        )[1],
        "DuckDB over the papers view (digestflow sql)": lambda v: view_sql(output, v, K),
        SCRIPT: lambda v: plain_numpy(output, v, K),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    answers: dict[str, list] = {name: [] for name in methods}
    order = list(methods)
    for i, vector in enumerate(qs[1:]):
        random.Random(i).shuffle(order)
        for name in order:
            seconds, rows = timed(methods[name], vector)
            times[name].append(seconds)
            answers[name].append([round(row[-1], 3) for row in rows])
    base = statistics.median(times[SCRIPT])
    rows = [["first search of a version (builds the index)", build_s, None, None, None]]
    for name in methods:
        median = statistics.median(times[name])
        same = answers[name] == answers[SCRIPT]
        rows.append([name, min(times[name]), median, median / base, same])
    return rows


# The child runs the CLI, then prints its own peak RSS (VmHWM, KiB) as its last stderr line
# (ru_maxrss would not do: Linux keeps the forking parent's peak across exec).
CHILD = (
    "import re, sys\n"
    "from beam_jobs.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"
    "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def cli_runs(output: Path) -> list[list[Any]]:
    """``digestflow similar`` as a user runs it, a whole process each (model load included):
    the first search of the version (index built into the default cache) and the next."""
    version = catalog.current_version(str(output))
    name = search.index_name(str(output), version.root, version.files)
    shutil.rmtree(search.search_cache_dir() / name, ignore_errors=True)
    argv = [sys.executable, "-c", CHILD, "similar", str(output), QUERY, "-k", str(K)]
    rows = []
    for label in ("first (builds the index)", "second"):
        started = time.perf_counter()
        done = subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - started
        peak_kib = int(done.stderr.decode().strip().splitlines()[-1])
        rows.append([f"digestflow similar, {label}", seconds, peak_kib / 1024])
    return rows


QUERY = "diffusion models for video generation"


def section(settings: Settings, results: dict[str, Any]) -> None:
    output = settings.out / "search" / f"papers-{PAPERS}"
    started = time.perf_counter()
    build_output(output)
    log(f"search: output of {PAPERS:,} papers ready in {time.perf_counter() - started:.0f} s")
    rows = measure(output, settings.out / "search" / "cache")
    processes = cli_runs(output)
    results["search"] = {"papers": PAPERS, "in_process": rows, "cli": processes}
    emit(
        results,
        render_table(
            f"similar over {PAPERS:,} canonical papers, top {K}, in one process (s; a fresh "
            f"DuckDB connection each; median of {REPEATS}; ratio = median / the script's; "
            "same = the same cosines as the script)",
            ["method", "min s", "median s", "ratio", "same"],
            rows,
        ),
    )
    emit(
        results,
        render_table(
            "digestflow similar as whole processes (s, model load included; peak RSS of the "
            "process)",
            ["run", "wall s", "peak RSS MiB"],
            processes,
        ),
    )
