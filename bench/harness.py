"""Benchmark harness (``make bench``): dedup quality, speed against a reference, determinism,
the model stage and its tags, the semantic merge and incremental updates.

Runs the sections chosen by ``--sections`` (default: all, in this order), prints each as
plain-text tables and writes them (rows and rendered tables) to ``<out>/results.json``;
generated inputs live under ``<out>/data`` (reused while the generator source and config are
unchanged), pipeline outputs and logs under ``<out>/runs``. What was measured, on which
machine, and how to read it: docs/benchmarks.md. No timing is asserted anywhere.

The quality, speed and determinism runs pass ``--no_embeddings``: they measure the dedup path
(parse -> sign -> LSH -> components -> write). ``--with-embeddings`` keeps embedding + tagging
in the *speed* runs (slow).

Sections, one module each (its docstring says what and how it measures):

``quality`` (:mod:`bench.quality`)
    pairwise precision / recall / F1 against the generator's ground truth, recall per
    perturbation class, and a sweep over thresholds and shingle kinds;
``speed`` (:mod:`bench.speed`)
    the dedup path against the plain datasketch script a user would write (:mod:`bench.reference`),
    each run a fresh process, and how cost scales with size;
``determinism`` (:mod:`bench.determinism`)
    two runs under different ``PYTHONHASHSEED`` must assign identically;
``embeddings`` (:mod:`bench.embed`, then :mod:`bench.tags`)
    the model stage against a plain encode, the embedding backends, and topic-tag quality on
    the labelled seed papers (skipped without the seed dumps);
``semantic`` (:mod:`bench.semantic`)
    cosine of invented revisions against the closest distinct seed papers: the margin behind
    ``--semantic_threshold`` (skipped without the seed dumps);
``incremental`` (:mod:`bench.incremental`)
    adding one day to a corpus with ``--incremental`` against the new day alone and a full
    re-run (issue #7);
``page`` (:mod:`bench.page`)
    size, ``render()`` time and headless-Chromium load time of the HTML page at 1k and 100k
    records (issue 17).

This module is also the child process of every measured pipeline run
(``python -m bench.harness _pipeline-worker ...``, see :func:`pipeline_worker`).

Usage: ``python -m bench [--sizes 10000,100000] [--quality-records 6000]
[--sections quality,speed,determinism] [--out out/bench]`` (``--help`` for all options).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

from beam_jobs.internals import counting_shuffle_bytes
from beam_jobs.launcher import run as run_pipeline
from bench import determinism, quality, speed
from bench.common import PIPELINE_WORKER, REPO_ROOT, Settings
from bench.reference import current_rss_mib, peak_rss_mib

SECTIONS = (
    "quality",
    "speed",
    "determinism",
    "embeddings",
    "semantic",
    "incremental",
    "page",
    "search",
)


# Sections that load the model (torch, sentence-transformers) import their modules only when
# they run, so neither the dedup sections nor the pipeline-worker child pay for them.


def embeddings_section(settings: Settings, results: dict[str, Any]) -> None:
    from bench import embed, tags

    embed.section(settings, results)
    tags.section(settings, results)


def semantic_section(settings: Settings, results: dict[str, Any]) -> None:
    from bench import semantic

    semantic.section(settings, results)


def incremental_section(settings: Settings, results: dict[str, Any]) -> None:
    from bench import incremental

    incremental.section(settings, results)


def page_section(settings: Settings, results: dict[str, Any]) -> None:
    from bench import page

    page.section(settings, results)


def search_section(settings: Settings, results: dict[str, Any]) -> None:
    from bench import search

    search.section(settings, results)


RUNNERS: dict[str, Callable[[Settings, dict[str, Any]], None]] = {
    "quality": quality.section,
    "speed": speed.section,
    "determinism": determinism.section,
    "embeddings": embeddings_section,
    "semantic": semantic_section,
    "incremental": incremental_section,
    "page": page_section,
    "search": search_section,
}


# ======================================================================================= main


def machine() -> dict[str, Any]:
    import psutil

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("apache-beam", "datasketch", "duckdb", "numpy")},
    }


def git_commit() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return commit.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())


def parse_settings(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/bench", help="Data, runs and results.json.")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="Comma-separated subset.")
    parser.add_argument("--seed", type=int, default=7, help="Generator seed (base).")
    parser.add_argument("--quality-records", type=int, default=6000)
    parser.add_argument(
        "--revision-rate", type=float, default=0.02, help="Share of 'revision' slots (0: none)."
    )
    parser.add_argument("--thresholds", default="0.6,0.7,0.8,0.9", help="Word-shingle sweep.")
    parser.add_argument("--char-thresholds", default="0.8", help="Char-shingle sweep.")
    parser.add_argument("--sizes", default="10000,100000", help="Records per speed run.")
    parser.add_argument("--determinism-records", type=int, default=2000)
    parser.add_argument(
        "--with-embeddings",
        action="store_true",
        help="Speed runs include embedding + tagging (slow); other sections never do.",
    )
    parser.add_argument(
        "--incremental-base-records",
        default="50000,200000",
        help="Section incremental: records of each base corpus one day is added to "
        "(comma-separated; e.g. 50000,200000,1000000 for the 1M row, ~11 min more).",
    )
    parser.add_argument(
        "--incremental-embed-records",
        type=int,
        default=1_000,
        help="Section incremental: base records of the run with embeddings (0: skip it).",
    )
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    return Settings(
        out=Path(args.out),
        sections=sections,
        seed=args.seed,
        quality_records=args.quality_records,
        revision_rate=args.revision_rate,
        thresholds=float_list(args.thresholds),
        char_thresholds=float_list(args.char_thresholds),
        sizes=tuple(sorted(int_list(args.sizes))),
        determinism_records=args.determinism_records,
        with_embeddings=args.with_embeddings,
        incremental_base_records=tuple(int_list(args.incremental_base_records)),
        incremental_embed_records=args.incremental_embed_records,
    )


def pipeline_worker(argv: Sequence[str]) -> int:
    """Child process of a measured pipeline run: run it, then write its summary as JSON."""
    result_path, pipeline_args = Path(argv[0]), list(argv[1:])
    rss_at_start = current_rss_mib()
    started = time.perf_counter()
    with counting_shuffle_bytes() as shuffled:
        summary = run_pipeline(pipeline_args)
    assert summary is not None
    summary["work_seconds"] = round(time.perf_counter() - started, 3)
    summary["shuffle_bytes"] = dict(shuffled)
    summary["rss_at_start_mib"] = rss_at_start
    summary["peak_rss_mib"] = peak_rss_mib()
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(summary, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [PIPELINE_WORKER]:
        return pipeline_worker(argv[1:])
    settings = parse_settings(argv)
    settings.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine(),
            "load_average_start": os.getloadavg(),
            "settings": {k: str(v) for k, v in asdict(settings).items()},
        }
    }
    for name in SECTIONS:
        if name in settings.sections:
            RUNNERS[name](settings, results)
    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["bench_seconds"] = round(time.perf_counter() - started, 1)
    results_path = settings.out / "results.json"
    results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"bench took {results['meta']['bench_seconds']:.0f} s; results: {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
