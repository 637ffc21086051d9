"""``make bench`` section ``speed``: the dedup path of the pipeline (FnApiRunner, default dedup
options) against :mod:`bench.reference` (the plain datasketch script a user would write instead)
on the same generated dumps.

Each measured run is a fresh subprocess; "wall" is timed inside it after imports, "peak RSS" is
reported by the child itself (``VmHWM``: the peak of its own address space since exec, see
:func:`bench.reference.peak_rss_mib` for why not the parent's ``getrusage``). With
``--with-embeddings`` the pipeline runs keep embedding + tagging.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beam_jobs.synthetic import GeneratorConfig
from bench.common import (
    Settings,
    corpus,
    default_minhash,
    emit,
    input_glob,
    log,
    measure_child,
    pipeline_argv,
    pipeline_command,
    ratio,
    render_table,
)


@dataclass(frozen=True)
class Measurement:
    impl: str
    records: int
    wall_seconds: float  # timed inside the child, after imports
    process_seconds: float  # the whole child, interpreter start and imports included
    peak_rss_mb: float
    rss_at_start_mb: float | None  # after imports, before the work
    clusters: int
    detail: dict[str, Any]

    @property
    def records_per_second(self) -> float:
        return ratio(self.records, self.wall_seconds)


def measure_pipeline(settings: Settings, data: Path, name: str) -> Measurement:
    run_dir = settings.out / "runs" / name
    result_path = run_dir / "worker-result.json"
    argv = pipeline_argv(data, run_dir / "output", embeddings=settings.with_embeddings)
    cmd = pipeline_command(result_path, argv)
    summary, elapsed = measure_child(cmd, result_path, run_dir / "pipeline.log")
    return Measurement(
        impl="pipeline",
        records=int(summary["records_parsed"]),
        wall_seconds=float(summary["work_seconds"]),
        process_seconds=elapsed,
        peak_rss_mb=float(summary["peak_rss_mib"]),
        rss_at_start_mb=summary.get("rss_at_start_mib"),
        clusters=int(summary["clusters"]),
        detail={
            "counters": summary.get("counters", {}),
            "shuffle_bytes": summary.get("shuffle_bytes", {}),
        },
    )


def measure_reference(settings: Settings, data: Path, name: str) -> Measurement:
    run_dir = settings.out / "runs" / name
    result_path = run_dir / "reference-result.json"
    minhash = default_minhash()
    cmd = [sys.executable, "-m", "bench.reference", "--input", input_glob(data)]
    cmd += ["--threshold", str(minhash.threshold), "--num_perm", str(minhash.num_perm)]
    cmd += ["--result", str(result_path)]
    summary, elapsed = measure_child(cmd, result_path, run_dir / "reference.log")
    return Measurement(
        impl="reference",
        records=int(summary["records"]),
        wall_seconds=float(summary["wall_seconds"]),
        process_seconds=elapsed,
        peak_rss_mb=float(summary["peak_rss_mib"]),
        rss_at_start_mb=summary.get("rss_at_start_mib"),
        clusters=int(summary["clusters"]),
        detail={k: summary[k] for k in ("distinct_texts", "similar_pairs", "seconds")},
    )


def section(settings: Settings, results: dict[str, Any]) -> None:
    measured: list[Measurement] = []
    for size in settings.sizes:
        config = GeneratorConfig(records=size, seed=settings.seed + 1)
        data = corpus(settings, f"speed-{size}-seed{config.seed}", config)
        log(f"speed: pipeline on {size:,} records")
        measured.append(measure_pipeline(settings, data, f"speed-{size}"))
        log(f"speed: reference on {size:,} records")
        measured.append(measure_reference(settings, data, f"speed-{size}"))
    results["speed"] = {
        "runs": [{**asdict(m), "records_per_second": m.records_per_second} for m in measured],
        "scaling": scaling_rows(measured),
    }
    emit(results, speed_table(measured, settings.with_embeddings))
    emit(results, comparison_table(measured))
    emit(results, shuffle_table(measured))
    if len(settings.sizes) > 1:
        emit(results, scaling_table(results["speed"]["scaling"]))


def speed_table(measured: Sequence[Measurement], embeddings: bool) -> str:
    path = "parse -> sign -> LSH -> components" + (
        " [-> embed + tag -> Parquet: pipeline only]"
        if embeddings
        else " [-> Parquet: pipeline only]"
    )
    title = f"Speed, {'full pipeline' if embeddings else 'dedup path'} ({path}); fresh process each"
    headers = ["records", "impl", "wall s", "records/s", "peak RSS MiB", "RSS after imports"]
    headers += ["process s", "clusters"]
    rows = [
        [
            f"{m.records:,}",
            m.impl,
            f"{m.wall_seconds:.1f}",
            f"{m.records_per_second:,.0f}",
            f"{m.peak_rss_mb:,.0f}",
            f"{m.rss_at_start_mb:,.0f}" if m.rss_at_start_mb is not None else "-",
            f"{m.process_seconds:.1f}",
            m.clusters,
        ]
        for m in measured
    ]
    return render_table(title, headers, rows)


def _pairs_by_size(measured: Sequence[Measurement]) -> list[tuple[Measurement, Measurement]]:
    by_key = {(m.records, m.impl): m for m in measured}
    sizes = sorted({m.records for m in measured})
    return [(by_key[(n, "pipeline")], by_key[(n, "reference")]) for n in sizes]


def comparison_table(measured: Sequence[Measurement]) -> str:
    headers = ["records", "wall pipeline/reference", "process pipeline/reference"]
    headers += ["RSS pipeline/reference", "reference steps s"]
    rows = []
    for pipe, ref in _pairs_by_size(measured):
        steps = ", ".join(f"{k} {v:.1f}" for k, v in ref.detail["seconds"].items())
        rows.append(
            [
                f"{pipe.records:,}",
                f"{ratio(pipe.wall_seconds, ref.wall_seconds):.2f}x",
                f"{ratio(pipe.process_seconds, ref.process_seconds):.2f}x",
                f"{ratio(pipe.peak_rss_mb, ref.peak_rss_mb):.2f}x",
                steps,
            ]
        )
    title = "Pipeline vs the plain datasketch script (same inputs, same bench run; goal <= 0.5x)"
    return render_table(title, headers, rows)


def shuffle_table(measured: Sequence[Measurement], top: int = 4) -> str:
    """Bytes the pipeline's shuffles received per parsed record (the Dataflow capacity model
    prices shuffle by volume), with the biggest shuffles by name."""
    headers = ["records", "shuffled MB", "bytes/record", f"largest {top} (bytes/record)"]
    rows = []
    for m in measured:
        if m.impl != "pipeline":
            continue
        by_name = m.detail.get("shuffle_bytes", {})
        total = sum(by_name.values())
        largest = sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        named = ", ".join(
            f"{shuffle_name(name)} {ratio(size, m.records):,.0f}" for name, size in largest
        )
        rows.append(
            [f"{m.records:,}", f"{total / 1e6:,.1f}", f"{ratio(total, m.records):,.0f}", named]
        )
    return render_table(
        "Shuffle volume of the pipeline (FnApiRunner grouping buffers)", headers, rows
    )


# Steps Beam adds inside a composite: naming a shuffle after them would hide which one it is.
_GENERIC_STEPS = ("Group", "GroupByKey", "CoGroupByKeyImpl", "ReshufflePerKey", "WriteFiles")
_GENERIC_LEAVES = ("GroupTempFilesByDestination",)


def shuffle_name(label: str) -> str:
    """The shuffle's label without the steps Beam adds (``A/JoinX/CoGroupByKeyImpl/GroupBy`` is
    ``A/JoinX``), keeping the last two named steps; the runner cuts long labels short, so a
    cut-off generic step (``CoGr``) counts as generic too."""
    parts = [part for part in label.split("/") if part]

    def generic(part: str) -> bool:
        return part in _GENERIC_LEAVES or any(
            step.startswith(part) and len(part) >= 4 for step in _GENERIC_STEPS
        )

    while len(parts) > 1 and generic(parts[-1]):
        parts.pop()
    named = [part for part in parts[:-1] if not generic(part)] + parts[-1:]
    return "/".join(named[-2:]) if named else label


SCALING_GOAL = 1.05  # cost growth per growth in records (issue #15: 100k -> 1M <= 10.5x)


def scaling_rows(measured: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Cost growth between consecutive sizes; the goal (issue #15) is <= 1.05x the growth in
    records: 10.5x from 100k to 1M."""
    rows = []
    for impl in ("pipeline", "reference"):
        runs = sorted((m for m in measured if m.impl == impl), key=lambda m: m.records)
        for small, big in zip(runs, runs[1:], strict=False):
            records_ratio = ratio(big.records, small.records)
            cost_ratio = ratio(big.wall_seconds, small.wall_seconds)
            rows.append(
                {
                    "impl": impl,
                    "from": small.records,
                    "to": big.records,
                    "records_ratio": records_ratio,
                    "cost_ratio": cost_ratio,
                    "goal": SCALING_GOAL * records_ratio,
                    "within_goal": cost_ratio <= SCALING_GOAL * records_ratio,
                    "rss_ratio": ratio(big.peak_rss_mb, small.peak_rss_mb),
                }
            )
    return rows


def scaling_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["impl", "records", "wall cost ratio", "goal", "within goal", "RSS ratio"]
    body = [
        [
            r["impl"],
            f"{r['from']:,} -> {r['to']:,}",
            f"{r['cost_ratio']:.2f}x",
            f"<= {r['goal']:.1f}x",
            r["within_goal"],
            f"{r['rss_ratio']:.2f}x",
        ]
        for r in rows
    ]
    return render_table("Scaling (wall seconds of the bigger run / the smaller one)", headers, body)
