"""Multi-worker correctness: one worker or several, the tables are the same; a hot LSH bucket
stays within bounded memory.

Runner choice: ``--runner=DirectRunner`` is Beam's *SwitchingDirectRunner*. It first tries
Prism, which downloads a binary from GitHub (offline: a DNS failure, then a fallback; online: a
different runner than the one meant here), and falls back to the FnApiRunner with the same
``DirectOptions`` (apache_beam/runners/direct/direct_runner.py). ``--direct_running_mode=
multi_processing`` does not skip the Prism attempt. So the tests ask for that FnApiRunner
directly: ``--runner=FnApiRunner --direct_running_mode=multi_processing
--direct_num_workers=2`` starts two ``sdk_worker_main`` subprocesses, each unpickling the
DoFns and exchanging elements over gRPC like separate workers; that they really ran is
checked by watching this process's children.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from beam_jobs.launcher import run
from beam_jobs.options import DigestflowOptions
from beam_jobs.query import catalog
from beam_jobs.synthetic.generator import GeneratorConfig, generate, make_paper
from transforms.dedup.minhash import MinHashConfig, MinHasher, band_keys
from transforms.schema import TABLES
from transforms.text import normalized_text

IN_MEMORY = ["--runner=FnApiRunner"]
TWO_PROCESSES = [
    "--runner=FnApiRunner",
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
]
# Embeddings are float vectors whose last bits depend on how RunInference batches; the
# tables compared here are the dedup result, so they are switched off where the option exists.
NO_EMBEDDINGS = (
    ["--no_embeddings"] if "embeddings" in DigestflowOptions([]).get_all_options() else []
)
SUMMARY_KEYS = [
    "files_matched",
    "records_parsed",
    "rows_written",
    "dead_lettered",
    "dead_letters_by_reason",
    "clusters",
    "every_record_written_once",
]


def _run(inputs: str, output: Path, runner: list[str]) -> dict[str, Any]:
    summary = run([f"--input={inputs}", f"--output={output}", *NO_EMBEDDINGS, *runner])
    assert summary is not None
    return summary


def _table(output: Path, table: str) -> tuple[list[str], list[tuple]]:
    return catalog.query(str(output), f"SELECT * FROM {table} ORDER BY ALL")


class SdkWorkers:
    """Records the pids of ``sdk_worker_main`` processes started below this one."""

    def __init__(self, interval: float = 0.05) -> None:
        self.pids: set[int] = set()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SdkWorkers:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    if any("sdk_worker_main" in part for part in child.cmdline()):
                        self.pids.add(child.pid)
                except psutil.Error:
                    continue
            time.sleep(self._interval)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multiworker")
    generate(out, GeneratorConfig(records=800, seed=5, malformed_rate=0.01))
    return out


@pytest.mark.slow
def test_two_worker_processes_write_the_same_tables(corpus: Path, tmp_path: Path) -> None:
    inputs = str(corpus / "*.txt")
    single = _run(inputs, tmp_path / "in_memory", IN_MEMORY)
    with SdkWorkers() as workers:
        multi = _run(inputs, tmp_path / "two_processes", TWO_PROCESSES)
    assert len(workers.pids) >= 2, f"expected 2 SDK worker processes, saw {workers.pids}"

    for key in SUMMARY_KEYS:
        assert single[key] == multi[key], key
    assert single["every_record_written_once"]
    for table in TABLES:
        columns, rows = _table(tmp_path / "in_memory", table)
        other_columns, other_rows = _table(tmp_path / "two_processes", table)
        assert columns == other_columns, table
        assert len(rows) == len(other_rows), table
        assert rows == other_rows, f"{table}: first difference at row " + str(
            next(i for i, (a, b) in enumerate(zip(rows, other_rows, strict=True)) if a != b)
        )
    # Not a trivial input: records, duplicates and dead letters all present.
    assert 700 < single["rows_written"] < 800
    assert single["clusters"] < single["rows_written"]
    assert single["dead_lettered"] > 0


# ------------------------------------------------------------------------------ hot bucket

HOT_COPIES = 3000
HOT_PER_FILE = 500
MEMORY_BOUND = 1536 * 2**20  # bytes of peak RSS growth allowed for the whole run


def _long_paper():
    """A synthetic paper with a long abstract (>= 150 words): enough words to make typos."""
    return next(
        p for p in (make_paper(99, i) for i in range(2000)) if len(p.abstract.split()) >= 150
    )


def _write_hot_dumps(directory: Path, copies: int = HOT_COPIES, seed: int = 7) -> list[str]:
    """One paper re-scraped ``copies`` times, each copy with one letter of one word of the
    abstract replaced: thousands of distinct texts that agree on most LSH bands, i.e. one
    giant bucket per such band. Returns the distinct abstracts."""
    paper = _long_paper()
    rng = random.Random(seed)
    words = [m for m in re.finditer(r"[A-Za-z]{6,}", paper.abstract)]
    abstracts = []
    for _ in range(copies):
        word = rng.choice(words)
        i = rng.randrange(1, len(word.group()) - 1)
        typo = word.group()[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word.group()[i + 1 :]
        abstracts.append(paper.abstract[: word.start()] + typo + paper.abstract[word.end() :])
    for k, start in enumerate(range(0, copies, HOT_PER_FILE)):
        lines = [
            line
            for abstract in abstracts[start : start + HOT_PER_FILE]
            for line in (paper.title, abstract)
        ]
        (directory / f"hot_2024-05-{k + 1:02d}.txt").write_text("\n".join(lines) + "\n")
    return sorted({normalized_text(paper.title, a) for a in abstracts})


def _largest_bucket(texts: list[str]) -> int:
    config = MinHashConfig()
    bands, rows = config.lsh_params
    signatures = MinHasher(config).signatures([text.split() for text in texts])
    buckets = Counter(key for sig in signatures for key in band_keys(sig, bands, rows))
    return max(buckets.values())


# Peak RSS is this process's own VmHWM: getrusage's ru_maxrss survives exec on Linux, so a
# child forked from a big pytest process (the whole suite, the model loaded) reports the
# parent's size as its own peak.
MEASURE = """
import json, sys
import psutil
from beam_jobs.launcher import run

def vm_hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

baseline = psutil.Process().memory_info().rss
summary = run(sys.argv[1:])
print(json.dumps({"baseline": baseline, "peak": vm_hwm(), "summary": summary}))
"""


@pytest.mark.slow
def test_hot_lsh_bucket_finishes_in_bounded_memory_as_one_cluster(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    generate(dumps, GeneratorConfig(records=600, seed=11))  # ordinary papers around it
    distinct = _write_hot_dumps(dumps)
    assert len(distinct) > 2000  # distinct texts: exact copies are merged before LSH
    assert _largest_bucket(distinct) > 1500  # the precondition: one really hot bucket

    output = tmp_path / "out"
    argv = [f"--input={dumps}/*.txt", f"--output={output}", *NO_EMBEDDINGS, *IN_MEMORY]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    growth = measured["peak"] - measured["baseline"]
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth / 2**20:.0f} MiB"
    assert measured["summary"]["every_record_written_once"]

    _, sizes = catalog.query(
        str(output),
        "SELECT cluster_id, count(*) AS n FROM records "
        "WHERE contains(source_file, '/hot_2024-') GROUP BY cluster_id ORDER BY n DESC",
    )
    assert sum(n for _, n in sizes) == HOT_COPIES
    assert len(sizes) <= 3, f"the copies split into {len(sizes)} clusters"
    assert sizes[0][1] >= 0.95 * HOT_COPIES
    _, shared = catalog.query(
        str(output),
        "SELECT count(*) FROM records WHERE cluster_id = ? "
        "AND NOT contains(source_file, '/hot_2024-')",
        [sizes[0][0]],
    )
    assert shared[0][0] == 0  # no unrelated paper was pulled into the hot cluster
