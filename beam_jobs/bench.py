"""Benchmark harness (``make bench``): dedup quality, speed against a reference, determinism.

Three sections, each printed as plain-text tables and written (rows and rendered tables) to
``<out>/results.json``; generated inputs live under ``<out>/data`` (reused while the generator
source and config are unchanged), pipeline outputs and logs under ``<out>/runs``.

Every pipeline run passes ``--no_embeddings``: this measures the dedup path (parse -> sign ->
LSH -> components -> write). ``--with-embeddings`` keeps embedding + tagging in the *speed*
runs (slow: minutes per 10k records on 2 CPU cores).

1. **Quality** on a generated corpus with ground truth: the pipeline runs in-process with its
   default dedup options; its ``records`` table is joined with ``ground_truth.jsonl`` through DuckDB
   on (file name, record_index). Pairwise precision / recall / F1 count record pairs that
   share a paper (truth) and a cluster (prediction). Records of the ``revision`` variant (a
   heavy rewrite, Jaccard 0.2-0.5 to its original, which is *not* meant to be merged at
   threshold 0.8) are left out of the pairs; how often they are merged is reported apart.
   Per class: recall = share of its records clustered with their paper's original, and the
   exact word-3-shingle Jaccard to that original (why a class is missed). Then a sweep over
   thresholds and shingle kinds.
2. **Speed** of the dedup path, pipeline (FnApiRunner, default dedup options) against
   :mod:`beam_jobs.bench_reference` (single-process datasketch). Each measured run is a fresh
   subprocess; "wall" is timed inside it after imports, "peak RSS" is reported by the child
   itself (``VmHWM``: the peak of its own address space since exec, see
   :func:`beam_jobs.bench_reference.peak_rss_mib` for why not the parent's ``getrusage``).
3. **Determinism**: two pipeline runs on one input, in separate processes with different
   ``PYTHONHASHSEED``, must give the same (record_id, cluster_id, is_canonical,
   duplicate_of, similarity, dup_kind).
4. **Embeddings** (see :mod:`beam_jobs.bench_embed`) and 5. **Semantic**: cosine of invented
   revisions (``tests/data/revisions.jsonl``) against the closest distinct seed papers, with and
   without the shared-name condition: the margin behind ``--semantic_threshold``
   (:mod:`beam_jobs.bench_semantic`; ~2 min, skipped without the seed dumps).
6. **Incremental**: the cost of adding one day (500 records, 80 % known) to a corpus with
   ``--incremental`` against the new day alone and a full re-run (issue #7; see
   :mod:`beam_jobs.bench_incremental`).

Usage: ``python -m beam_jobs.bench [--sizes 10000,100000] [--quality-records 6000]
[--sections quality,speed,determinism] [--out out/bench]``. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import catalog
from beam_jobs.bench_reference import current_rss_mib, peak_rss_mib
from beam_jobs.options import DigestflowOptions, dedup_config
from beam_jobs.pipeline import run as run_pipeline
from beam_jobs.synthetic import GROUND_TRUTH_NAME, NEAR_DUP_CLASSES, GeneratorConfig, generate
from transforms.minhash import (
    MinHashConfig,
    MinHasher,
    estimated_jaccard,
    exact_jaccard,
    shingles,
)
from transforms.text import normalized_text

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATOR_SOURCES = ("beam_jobs/synthetic.py", "beam_jobs/vocabulary.py")
PIPELINE_WORKER = "_pipeline-worker"
SECTIONS = ("quality", "speed", "determinism", "embeddings", "semantic", "incremental")
DEDUP_ONLY = ("--no_embeddings",)
# Ambiguous by design (see the module docstring): reported apart, not scored as pairs.
UNSCORED = frozenset({"revision", "missing_abstract"})
RECALL_CLASSES = ("exact", *NEAR_DUP_CLASSES, "revision")
WORD_SHINGLES = MinHashConfig()  # word 3-shingles: the unit the ground truth is defined in


@dataclass(frozen=True)
class Settings:
    out: Path
    sections: tuple[str, ...]
    seed: int
    quality_records: int
    revision_rate: float
    thresholds: tuple[float, ...]
    char_thresholds: tuple[float, ...]
    sizes: tuple[int, ...]
    determinism_records: int
    with_embeddings: bool
    incremental_base_records: int = 50_000
    incremental_embed_records: int = 1_000


# ============================================================================== small helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pairs(n: int) -> int:
    return n * (n - 1) // 2


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A titled plain-text table; the first column left-aligned, the others right-aligned."""
    cells = [[fmt(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, "=" * len(title), line(headers), rule, *map(line, cells)])


def emit(results: dict[str, Any], table: str) -> None:
    results.setdefault("tables", []).append(table)
    print(table + "\n", flush=True)


def default_minhash() -> MinHashConfig:
    """The algorithm settings of a run with no flags, straight from the option parser."""
    return dedup_config(PipelineOptions([]).view_as(DigestflowOptions)).minhash


# ===================================================================================== inputs


def corpus_stamp(config: GeneratorConfig) -> dict[str, Any]:
    digest = hashlib.sha256()
    for name in GENERATOR_SOURCES:
        digest.update((REPO_ROOT / name).read_bytes())
    return {"config": {k: str(v) for k, v in asdict(config).items()}, "source": digest.hexdigest()}


def corpus(settings: Settings, name: str, config: GeneratorConfig) -> Path:
    """A generated corpus under ``<out>/data/<name>``, regenerated only when it is stale."""
    directory = settings.out / "data" / name
    stamp_path = directory / "generator.json"
    stamp = corpus_stamp(config)
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    log(f"generating {config.records:,} records into {directory}")
    generate(directory, config)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return directory


def input_glob(directory: Path) -> str:
    return str(directory.resolve() / "*.txt*")


def pipeline_argv(inputs: Path, output: Path, *flags: str, embeddings: bool = False) -> list[str]:
    argv = [
        "--input",
        input_glob(inputs),
        "--output",
        str(output),
        "--overwrite",
        "--quiet",
        *flags,
    ]
    return argv if embeddings else argv + list(DEDUP_ONLY)


# ==================================================================================== quality


@dataclass(frozen=True)
class Labelled:
    """One ground-truth record slot with where the pipeline put it (cluster None: lost)."""

    paper_id: str
    variant: str
    cluster_id: str | None
    title: str | None
    abstract: str | None


@dataclass(frozen=True)
class PairScores:
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return ratio(self.correct_pairs, self.predicted_pairs) if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return ratio(self.correct_pairs, self.true_pairs) if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class ClassRecall:
    variant: str
    records: int
    recall: float
    jaccard_min: float
    jaccard_median: float
    missed: int
    missed_above_threshold: int  # misses whose true Jaccard reaches the run's threshold
    # Misses whose MinHash estimate reaches it too: lost by LSH banding or cluster splitting,
    # not by the estimate (the rest fell below the threshold by estimation noise or truly).
    missed_estimate_above: int


def _truth_sql(truth_path: Path) -> str:
    path = str(truth_path.resolve()).replace("'", "''")
    return f"""
        SELECT t.paper_id, t.variant, r.cluster_id, r.title, r.abstract
        FROM read_json('{path}', format = 'newline_delimited', columns = {{
            source_file: 'VARCHAR', record_index: 'BIGINT', paper_id: 'VARCHAR',
            variant: 'VARCHAR'}}) AS t
        LEFT JOIN records AS r
          ON regexp_extract(r.source_file, '[^/\\\\]+$') = t.source_file
         AND r.record_index = t.record_index
        ORDER BY t.source_file, t.record_index
    """


def labelled_records(output: Path, truth_path: Path) -> list[Labelled]:
    """Ground truth joined with the records table (DuckDB), one row per truth slot."""
    _, rows = catalog.query(str(output), _truth_sql(truth_path))
    return [Labelled(*row) for row in rows]


def scored_clusters(rows: Sequence[Labelled]) -> list[tuple[str, str]]:
    """(paper_id, cluster) of the scored rows; a lost record is a cluster of its own."""
    return [
        (r.paper_id, r.cluster_id if r.cluster_id is not None else f"lost:{i}")
        for i, r in enumerate(rows)
        if r.variant not in UNSCORED
    ]


def pairwise_scores(rows: Sequence[Labelled]) -> PairScores:
    scored = scored_clusters(rows)
    return PairScores(
        true_pairs=sum(pairs(n) for n in Counter(p for p, _ in scored).values()),
        predicted_pairs=sum(pairs(n) for n in Counter(c for _, c in scored).values()),
        correct_pairs=sum(pairs(n) for n in Counter(scored).values()),
    )


def text_tokens(r: Labelled) -> list[str]:
    return normalized_text(r.title or "", r.abstract or "").split()


def word_jaccard(a: Labelled, b: Labelled) -> float:
    return exact_jaccard(
        shingles(text_tokens(a), WORD_SHINGLES), shingles(text_tokens(b), WORD_SHINGLES)
    )


def estimated_similarities(
    pairs_: Sequence[tuple[Labelled, Labelled]], hasher: MinHasher
) -> list[float]:
    """The pipeline's MinHash estimate of each pair's Jaccard (its verification number)."""
    if not pairs_:
        return []
    firsts = hasher.signatures([text_tokens(a) for a, _ in pairs_])
    seconds = hasher.signatures([text_tokens(b) for _, b in pairs_])
    return [estimated_jaccard(x, y) for x, y in zip(firsts, seconds, strict=True)]


def class_recalls(rows: Sequence[Labelled], minhash: MinHashConfig) -> list[ClassRecall]:
    """Per variant: share of its records clustered with their paper's original record."""
    originals = {r.paper_id: r for r in rows if r.variant == "original"}
    hasher = MinHasher(minhash)
    results = []
    for variant in RECALL_CLASSES:
        members = [r for r in rows if r.variant == variant and r.cluster_id is not None]
        if not members:
            continue
        hits = [r.cluster_id == originals[r.paper_id].cluster_id for r in members]
        jaccards = [word_jaccard(r, originals[r.paper_id]) for r in members]
        missed = [(r, j) for r, j, hit in zip(members, jaccards, hits, strict=True) if not hit]
        estimates = estimated_similarities([(r, originals[r.paper_id]) for r, _ in missed], hasher)
        results.append(
            ClassRecall(
                variant=variant,
                records=len(members),
                recall=sum(hits) / len(members),
                jaccard_min=min(jaccards),
                jaccard_median=statistics.median(jaccards),
                missed=len(missed),
                missed_above_threshold=sum(1 for _, j in missed if j >= minhash.threshold),
                missed_estimate_above=sum(1 for e in estimates if e >= minhash.threshold),
            )
        )
    return results


def weakest_near_class(recalls: Sequence[ClassRecall]) -> ClassRecall:
    return min((c for c in recalls if c.variant in NEAR_DUP_CLASSES), key=lambda c: c.recall)


def revision_merge_rate(recalls: Sequence[ClassRecall]) -> float | None:
    return next((c.recall for c in recalls if c.variant == "revision"), None)


@dataclass(frozen=True)
class QualityRun:
    shingle: str
    threshold: float
    is_default: bool
    scores: PairScores
    recalls: list[ClassRecall]
    clusters: int
    lost: int
    wall_seconds: float

    @property
    def label(self) -> str:
        return f"{self.shingle} {self.threshold:g}" + (" (default)" if self.is_default else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "shingle": self.shingle,
            "threshold": self.threshold,
            "is_default": self.is_default,
            "pairs": self.scores.as_dict(),
            "classes": [asdict(c) for c in self.recalls],
            "clusters": self.clusters,
            "lost_records": self.lost,
            "wall_seconds": self.wall_seconds,
        }


def quality_run(
    settings: Settings, data: Path, shingle: str, threshold: float, is_default: bool
) -> QualityRun:
    output = (
        settings.out
        / "runs"
        / ("quality-default" if is_default else f"quality-{shingle}-{threshold:g}")
    )
    flags = [] if is_default else ["--shingle", shingle, "--threshold", str(threshold)]
    log(f"quality run: {shingle} shingles, threshold {threshold:g}")
    summary = run_pipeline(pipeline_argv(data, output, *flags))
    assert summary is not None
    rows = labelled_records(output, data / GROUND_TRUTH_NAME)
    return QualityRun(
        shingle=shingle,
        threshold=threshold,
        is_default=is_default,
        scores=pairwise_scores(rows),
        recalls=class_recalls(rows, MinHashConfig(shingle=shingle, threshold=threshold)),
        clusters=int(summary["clusters"]),
        lost=sum(1 for r in rows if r.cluster_id is None and r.variant not in UNSCORED),
        wall_seconds=float(summary["wall_seconds"]),
    )


def quality_section(settings: Settings, results: dict[str, Any]) -> None:
    config = GeneratorConfig(
        records=settings.quality_records, seed=settings.seed, revision_rate=settings.revision_rate
    )
    data = corpus(settings, f"quality-{config.records}-seed{config.seed}", config)
    defaults = default_minhash()
    default = quality_run(settings, data, defaults.shingle, defaults.threshold, True)
    sweep = [default]
    grid = [("word", t) for t in settings.thresholds] + [
        ("char", t) for t in settings.char_thresholds
    ]
    for shingle, threshold in grid:
        if (shingle, threshold) != (defaults.shingle, defaults.threshold):
            sweep.append(quality_run(settings, data, shingle, threshold, False))
    sweep.sort(key=lambda q: (q.shingle != "word", q.threshold))
    results["quality"] = {
        "corpus": {"dir": str(data), **corpus_stamp(config)["config"]},
        "default": default.as_dict(),
        "sweep": [q.as_dict() for q in sweep],
    }
    emit(results, quality_pairs_table(default, config))
    emit(results, class_table(default))
    emit(results, sweep_table(sweep))


def quality_pairs_table(run: QualityRun, config: GeneratorConfig) -> str:
    s = run.scores
    title = (
        f"Dedup quality, pairwise ({config.records:,} generated records, seed {config.seed}, "
        f"default options: {run.shingle} shingles, threshold {run.threshold:g})"
    )
    headers = ["true pairs", "predicted pairs", "correct", "precision", "recall", "F1"]
    headers += ["clusters", "lost records"]
    row = [s.true_pairs, s.predicted_pairs, s.correct_pairs, s.precision, s.recall, s.f1]
    return render_table(title, headers, [[*map(fmt, row), run.clusters, run.lost]])


def class_table(run: QualityRun) -> str:
    title = (
        "Recall per perturbation class (record clustered with its paper's original; J = exact "
        "word-3-shingle Jaccard to it, est = the pipeline's MinHash estimate)"
    )
    thr = f"{run.threshold:g}"
    headers = ["class", "records", "recall", "J min", "J median", "missed"]
    headers += [f"missed, J>={thr}", f"missed, est>={thr}"]
    rows = [
        [
            c.variant + (" (not a target)" if c.variant == "revision" else ""),
            c.records,
            c.recall,
            c.jaccard_min,
            c.jaccard_median,
            c.missed,
            c.missed_above_threshold,
            c.missed_estimate_above,
        ]
        for c in run.recalls
    ]
    return render_table(title, headers, rows)


def sweep_table(sweep: Sequence[QualityRun]) -> str:
    headers = ["shingles / threshold", "precision", "recall", "F1", "weakest class", "its recall"]
    headers += ["revisions merged", "clusters", "wall s"]
    rows = []
    for q in sweep:
        weakest = weakest_near_class(q.recalls)
        merged = revision_merge_rate(q.recalls)
        rows.append(
            [q.label, q.scores.precision, q.scores.recall, q.scores.f1, weakest.variant]
            + [weakest.recall, merged, q.clusters, f"{q.wall_seconds:.1f}"]
        )
    title = "Threshold / shingle trade-off (same corpus; wall s: in-process run, indicative)"
    return render_table(title, headers, rows)


# ====================================================================================== speed


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


def measure_child(
    cmd: list[str], result_path: Path, log_path: Path, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run ``cmd`` in a fresh process; (the JSON it wrote to ``result_path``, its seconds)."""
    result_path.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        started = time.perf_counter()
        code = subprocess.run(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, check=False
        ).returncode
        elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {code}; see {log_path}")
    return json.loads(result_path.read_text()), elapsed


def pipeline_command(result_path: Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "beam_jobs.bench", PIPELINE_WORKER, str(result_path), *argv]


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
        detail={"counters": summary.get("counters", {})},
    )


def measure_reference(settings: Settings, data: Path, name: str) -> Measurement:
    run_dir = settings.out / "runs" / name
    result_path = run_dir / "reference-result.json"
    minhash = default_minhash()
    cmd = [sys.executable, "-m", "beam_jobs.bench_reference", "--input", input_glob(data)]
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


def speed_section(settings: Settings, results: dict[str, Any]) -> None:
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
    headers = ["records", "wall pipeline/reference", "RSS pipeline/reference", "reference steps s"]
    rows = []
    for pipe, ref in _pairs_by_size(measured):
        steps = ", ".join(f"{k} {v:.1f}" for k, v in ref.detail["seconds"].items())
        rows.append(
            [
                f"{pipe.records:,}",
                f"{ratio(pipe.wall_seconds, ref.wall_seconds):.2f}x",
                f"{ratio(pipe.peak_rss_mb, ref.peak_rss_mb):.2f}x",
                steps,
            ]
        )
    return render_table("Pipeline vs reference (same inputs, same bench run)", headers, rows)


def scaling_rows(measured: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Cost growth between consecutive sizes; the goal is <= 1.2x the growth in records."""
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
                    "goal": 1.2 * records_ratio,
                    "within_goal": cost_ratio <= 1.2 * records_ratio,
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


# ================================================================================ determinism


def assignment_set(output: Path) -> set[tuple]:
    sql = (
        "SELECT record_id, cluster_id, is_canonical, duplicate_of, similarity, dup_kind "
        "FROM records"
    )
    return set(catalog.query(str(output), sql)[1])


def determinism_section(settings: Settings, results: dict[str, Any]) -> None:
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


# ======================================================================================= main


def embeddings_section(settings: Settings, results: dict[str, Any]) -> None:
    from beam_jobs import bench_embed

    config = GeneratorConfig(records=bench_embed.RECORDS, seed=settings.seed + 3)
    data = corpus(settings, "embeddings", config)
    output = settings.out / "runs" / "embeddings"
    row = bench_embed.pipeline_vs_encode(data, output)
    results["embeddings"] = row
    emit(
        results,
        render_table(
            "Whole pipeline with embeddings vs model load + plain encode of its canonical texts "
            f"(same process, torch, median of {row['pairs']} alternating pairs)",
            [
                "records",
                "canonical texts",
                "embedded_texts",
                "pipeline s (all)",
                "of which model s",
                "other s",
                "encode s (all)",
                "ratio (goal <= 1.2)",
                "ratio range",
                "CPU-time ratio",
                "encode texts/s",
            ],
            [
                [
                    row["records"],
                    row["canonical_texts"],
                    row["embedded_texts"],
                    f"{row['pipeline_s']:.1f} ({', '.join(map(str, row['pipeline_s_all']))})",
                    row["pipeline_inference_s"],
                    row["pipeline_other_s"],
                    f"{row['encode_s']:.1f} ({', '.join(map(str, row['encode_s_all']))})",
                    f"{row['ratio']:.2f}x",
                    f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}x",
                    f"{row['cpu_ratio']:.2f}x ({', '.join(map(str, row['cpu_ratio_all']))})",
                    row["texts_per_s_encode"],
                ]
            ],
        ),
    )
    texts = bench_embed.canonical_texts(output)[: bench_embed.BACKEND_TEXTS]
    backends = bench_embed.backend_comparison(texts, settings.out / "cache")
    results["embedding_backends"] = backends
    emit(
        results,
        render_table(
            f"Embedding backends vs torch fp32 ({len(texts)} canonical texts, encode only, "
            f"median of {bench_embed.BACKEND_REPEATS} interleaved runs)",
            [
                "backend",
                "load s (export)",
                "encode s",
                "texts/s",
                "speed vs torch",
                "cosine min",
                "cosine mean",
            ],
            [
                [
                    b["backend"],
                    b["load_s"],
                    b["encode_s"],
                    b["texts_per_s"],
                    f"{b['speedup']:.2f}x",
                    f"{b['cosine_min']:.5f}",
                    f"{b['cosine_mean']:.5f}",
                ]
                for b in backends
            ],
        ),
    )
    onnx = bench_embed.onnx_pipeline(data, output, row["pipeline_s"])
    if onnx is not None:
        results["embeddings_onnx_pipeline"] = onnx
        emit(
            results,
            render_table(
                "Whole pipeline with --embedding_backend onnx (one run, export cached beforehand)",
                [
                    "records",
                    "embedded_texts",
                    "pipeline s",
                    "of which model s",
                    "speed vs torch pipeline",
                ],
                [
                    [
                        onnx["records"],
                        onnx["embedded_texts"],
                        onnx["pipeline_s"],
                        onnx["model_s"],
                        f"{onnx['speedup_vs_torch_pipeline']:.2f}x",
                    ]
                ],
            ),
        )
    quality = bench_embed.tag_quality()
    if quality is None:
        log("seed dumps absent: tag quality skipped")
        return
    results["tags"] = quality
    table_rows = []
    for name, scores in quality.items():
        if isinstance(scores, dict) and {"precision", "recall", "f1"} <= scores.keys():
            table_rows.append([name, scores["precision"], scores["recall"], scores["f1"]])
    emit(
        results,
        render_table(
            "Topic tags on the labelled seed papers (micro averages; cross_validated: 5 folds, "
            "few_shot: the other folds as --tag_examples)",
            ["setting", "precision", "recall", "F1"],
            table_rows,
        ),
    )


def semantic_section(settings: Settings, results: dict[str, Any]) -> None:
    """Why --semantic_threshold is what it is: revision vs distinct-paper cosines."""
    from beam_jobs import bench_semantic

    measured = bench_semantic.semantic_margin()
    if measured is None:
        log("seed dumps absent: semantic margin skipped")
        return
    results["semantic"] = measured
    m = measured
    emit(
        results,
        render_table(
            f"Semantic merge: true revisions vs distinct papers ({m['papers']} papers: "
            "tests/data/revisions.jsonl + seed dumps; cosine of all-MiniLM-L6-v2 embeddings)",
            ["measure", "cosine only", "with a shared name"],
            [
                ["revision pairs", m["revision_pairs"], m["revisions_sharing_a_name"]],
                ["revision cosine min", m["revision_cosine_min"], m["revision_named_cosine_min"]],
                ["revision cosine median", m["revision_cosine_median"], "-"],
                ["revision word-3-shingle Jaccard max", m["revision_jaccard_max"], "-"],
                [
                    "max cosine of distinct papers",
                    m["distinct_cosine_max"],
                    m["distinct_named_cosine_max"],
                ],
                [
                    "margin (revision min - distinct max)",
                    m["margin_cosine_only"],
                    m["margin_with_names"],
                ],
                ["midpoint", "-", m["midpoint_with_names"]],
                ["chosen --semantic_threshold", "-", m["threshold"]],
                ["revisions merged at it", "-", m["revisions_merged"]],
                ["distinct pairs merged at it", "-", m["distinct_merged"]],
            ],
        ),
    )
    emit(
        results,
        render_table(
            "Closest distinct papers that share a name (what the threshold must stay above)",
            ["cosine", "shared name", "paper a", "paper b"],
            [
                [p["cosine"], ",".join(p["shared_names"]), p["a"][:50], p["b"][:50]]
                for p in m["top_distinct_named"]
            ],
        ),
    )


def incremental_section(settings: Settings, results: dict[str, Any]) -> None:
    """Issue #7: one day added with --incremental vs the new day alone vs a re-run."""
    from beam_jobs import bench_incremental

    bench_incremental.incremental_section(settings, results)


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
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.bench", description=__doc__.split("\n\n")[0]
    )
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
        type=int,
        default=50_000,
        help="Section incremental: records of the base corpus one day is added to.",
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
        incremental_base_records=args.incremental_base_records,
        incremental_embed_records=args.incremental_embed_records,
    )


def pipeline_worker(argv: Sequence[str]) -> int:
    """Child process of a measured pipeline run: run it, then write its summary as JSON."""
    result_path, pipeline_args = Path(argv[0]), list(argv[1:])
    rss_at_start = current_rss_mib()
    started = time.perf_counter()
    summary = run_pipeline(pipeline_args)
    assert summary is not None
    summary["work_seconds"] = round(time.perf_counter() - started, 3)
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
    sections = {
        "quality": quality_section,
        "speed": speed_section,
        "determinism": determinism_section,
        "embeddings": embeddings_section,
        "semantic": semantic_section,
        "incremental": incremental_section,
    }
    for name in SECTIONS:
        if name in settings.sections:
            sections[name](settings, results)
    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["bench_seconds"] = round(time.perf_counter() - started, 1)
    results_path = settings.out / "results.json"
    results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"bench took {results['meta']['bench_seconds']:.0f} s; results: {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
