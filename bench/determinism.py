"""``make bench`` section ``determinism``: two pipeline runs on one input, in separate
processes with different ``PYTHONHASHSEED``, must give the same (record_id, cluster_id,
is_canonical, duplicate_of, similarity, dup_kind)."""

from __future__ import annotations

import os
from typing import Any

from beam_jobs.synthetic import GeneratorConfig
from bench.common import (
    Settings,
    assignment_set,
    corpus,
    emit,
    log,
    measure_child,
    pipeline_argv,
    pipeline_command,
    render_table,
)


def section(settings: Settings, results: dict[str, Any]) -> None:
    config = GeneratorConfig(records=settings.determinism_records, seed=settings.seed + 2)
    data = corpus(settings, f"determinism-{config.records}-seed{config.seed}", config)
    sets = []
    for hash_seed in ("1", "2"):
        run_dir = settings.out / "runs" / f"determinism-hashseed{hash_seed}"
        result_path = run_dir / "worker-result.json"
        cmd = pipeline_command(result_path, pipeline_argv(data, run_dir / "output"))
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        log(f"determinism run with PYTHONHASHSEED={hash_seed}")
        measure_child(cmd, result_path, run_dir / "pipeline.log", env)
        sets.append(assignment_set(run_dir / "output"))
    first, second = sets
    row = {
        "records": config.records,
        "rows_run_1": len(first),
        "rows_run_2": len(second),
        "rows_differing": len(first ^ second),
        "identical": first == second,
    }
    results["determinism"] = row
    title = (
        "Determinism: two runs, separate processes, PYTHONHASHSEED 1 vs 2 "
        "(record_id, cluster_id, is_canonical, duplicate_of, similarity, dup_kind)"
    )
    headers = ["records", "rows run 1", "rows run 2", "rows differing", "identical"]
    emit(results, render_table(title, headers, [list(row.values())]))
