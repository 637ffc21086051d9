"""``make bench`` section ``embeddings``: what the model stage costs, then how well it tags.

* **Pipeline vs plain encode.** The whole pipeline (parse, dedup, embed, tag, write Parquet)
  on generated dumps against a plain ``SentenceTransformer`` load + ``encode`` of the same
  canonical texts, in the same process, :data:`PAIRS` times in alternating order (P E, E P)
  so warm-up and drift of a shared machine fall on both sides. ``sentence_transformers`` is
  imported before either clock starts (a per-process cost a plain script pays too). The
  pipeline's model time is the handler's ``inference_ms`` counter; the rest is Beam, parse,
  dedup, model loads, tagging, semantic merge and Parquet.
* **Backends.** ``encode`` of the same texts with every installed backend, interleaved,
  against torch fp32: speed ratio and cosine (min/mean); then what each backend's vectors
  decide (revision merges, margins, topic F1: :func:`backend_quality`); then one pipeline run
  with ``--embedding_backend onnx``. Exports and the int8 quantizations go to a fresh cache
  (their time reported apart, as *load s*).

The harness ends the section with :mod:`bench.tags` (topic-tag quality on the labelled seed
papers).
"""

from __future__ import annotations

import functools
import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beam_jobs.launcher import run as run_pipeline
from beam_jobs.query import catalog
from beam_jobs.synthetic import GeneratorConfig
from bench.common import SEEDS, Settings, corpus, emit, log, render_table
from transforms.enrich.embed import EmbedConfig, embedding_text
from transforms.enrich.encoders import (
    BACKENDS,
    DEFAULT_BACKEND,
    default_cache_dir,
    ensure_exported,
    load_encoder,
    missing_runtime,
)
from transforms.enrich.semantic.rule import EVIDENCE_TIERS, SemanticConfig
from transforms.metrics import EMBED_NAMESPACE

RECORDS = 1500  # ~1,040 canonical texts: ~40 s of encode, so fixed costs weigh honestly
PAIRS = 2
BACKEND_TEXTS = 128
BACKEND_REPEATS = 2


def canonical_texts(output: Path) -> list[str]:
    _, rows = catalog.query(
        str(output), "SELECT title, abstract FROM records WHERE is_canonical ORDER BY record_id"
    )
    config = EmbedConfig()
    return [embedding_text(t, a, config.text_template) for t, a in rows]


@dataclass(frozen=True)
class Timing:
    """Wall seconds and CPU seconds of this process (all its threads) for one step. CPU time
    barely moves when other jobs share the cores; wall time does (docs/benchmarks.md)."""

    wall: float
    cpu: float


def timed(step: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = step()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), value


def run_args(data: Path, output: Path, *flags: str) -> list[str]:
    return [f"--input={data}/*.txt*", f"--output={output}", "--overwrite", "--quiet", *flags]


def inference_seconds(summary: dict[str, Any]) -> float:
    """Model time inside a run (papers, prototypes and tag examples), from its counters."""
    return summary.get("counters", {}).get(f"{EMBED_NAMESPACE}.inference_ms", 0) / 1000


def load_and_encode(
    texts: list[str], backend: str = "torch", cache_dir: Path | None = None
) -> None:
    """Load the model and encode ``texts`` the way the pipeline does."""
    config = EmbedConfig()
    model = load_encoder(config.model_dir, backend, config.max_seq_length, cache_dir)
    model.encode(texts, batch_size=config.encode_batch_size, normalize_embeddings=True)


def _median(values: Iterable[float], digits: int = 1) -> float:
    return round(statistics.median(values), digits)


def pipeline_vs_encode(data: Path, output: Path, pairs: int = PAIRS) -> dict[str, Any]:
    import sentence_transformers  # noqa: F401 - imported before both clocks, see module doc

    pipeline: list[Timing] = []
    inference: list[float] = []
    encode: list[Timing] = []
    summary: dict[str, Any] = {}
    texts: list[str] = []
    for pair in range(pairs):
        for step in ("pipeline", "encode") if pair % 2 == 0 else ("encode", "pipeline"):
            if step == "pipeline":  # pair 0 runs the pipeline first: texts known after it
                timing, summary = timed(lambda: run_pipeline(run_args(data, output)))
                pipeline.append(timing)
                inference.append(inference_seconds(summary))
                texts = texts or canonical_texts(output)
            else:
                encode.append(timed(functools.partial(load_and_encode, texts))[0])
    wall_ratios = [p.wall / e.wall for p, e in zip(pipeline, encode, strict=True)]
    cpu_ratios = [p.cpu / e.cpu for p, e in zip(pipeline, encode, strict=True)]
    return {
        "records": summary["records_parsed"],
        "canonical_texts": len(texts),
        "embedded_texts": summary["embedded_texts"],
        "pairs": pairs,
        "pipeline_s": _median(t.wall for t in pipeline),
        "pipeline_s_all": [round(t.wall, 1) for t in pipeline],
        "pipeline_inference_s": _median(inference),
        "pipeline_other_s": _median(t.wall - i for t, i in zip(pipeline, inference, strict=True)),
        "encode_s": _median(t.wall for t in encode),
        "encode_s_all": [round(t.wall, 1) for t in encode],
        "ratio": _median(wall_ratios, 2),
        "ratio_min": round(min(wall_ratios), 2),
        "ratio_max": round(max(wall_ratios), 2),
        "cpu_ratio": _median(cpu_ratios, 2),
        "cpu_ratio_all": [round(r, 2) for r in cpu_ratios],
        "texts_per_s_encode": round(len(texts) / statistics.median(t.wall for t in encode), 1),
    }


def backend_comparison(texts: list[str], cache_dir: Path) -> list[dict[str, Any]]:
    """Each installed backend against torch fp32 on the same texts (interleaved repeats)."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    config = EmbedConfig()
    backends = [b for b in BACKENDS if missing_runtime(b) is None]
    export_s: dict[str, float] = {}
    encoders: dict[str, Any] = {}
    for backend in backends:
        started = time.perf_counter()
        encoders[backend] = load_encoder(
            config.model_dir, backend, config.max_seq_length, cache_dir
        )
        export_s[backend] = time.perf_counter() - started
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(BACKEND_REPEATS):
        for backend in backends if repeat % 2 == 0 else backends[::-1]:
            model = encoders[backend]
            model.encode(texts[:8], batch_size=config.encode_batch_size)  # warm-up
            started = time.perf_counter()
            vectors[backend] = np.asarray(
                model.encode(texts, batch_size=config.encode_batch_size, normalize_embeddings=True)
            )
            seconds[backend].append(time.perf_counter() - started)
    rows = []
    torch_s = statistics.median(seconds["torch"])
    for backend in backends:
        cosines = np.sum(vectors[backend] * vectors["torch"], axis=1)
        median = statistics.median(seconds[backend])
        rows.append(
            {
                "backend": backend,
                "texts": len(texts),
                "load_s": round(export_s[backend], 1),
                "encode_s": round(median, 2),
                "encode_s_all": [round(s, 2) for s in seconds[backend]],
                "texts_per_s": round(len(texts) / median, 1),
                "speedup": round(torch_s / median, 2),
                "cosine_min": round(float(cosines.min()), 5),
                "cosine_mean": round(float(cosines.mean()), 5),
            }
        )
    return rows


def backend_quality(cache_dir: Path) -> list[dict[str, Any]]:
    """What each installed backend's vectors decide, on the same papers: the revision merges
    and false merges of the tiered rule (hand-written revisions, near-misses and the seed
    papers, as in section *semantic*), how close the closest calls come to their tier's bar,
    and the topic F1 on the labelled seed papers (zero-shot, and the 5-fold estimate of the
    packaged head's recipe). Needs the seed dumps."""
    from bench import semantic, tags

    if not SEEDS.is_dir() or not any(SEEDS.glob("*.txt")):
        log("seed dumps absent: backend quality skipped")
        return []
    papers = (
        semantic.revision_papers(semantic.REVISIONS_BY_KIND)
        + semantic.revision_papers()
        + semantic.seed_papers(SEEDS)
    )
    rule = SemanticConfig()
    rows = []
    for backend in (b for b in BACKENDS if missing_runtime(b) is None):
        config = EmbedConfig(backend=backend, cache_dir=str(cache_dir))
        vectors = semantic.embed(papers, config)
        measured = semantic.tier_tables(papers, vectors)
        pairs = semantic.rule_pairs(papers, vectors, rule)
        revisions = [r for r in measured["per_kind"] if r["pairs"] != "-"]
        distinct = [r for r in measured["per_kind"] if r["pairs"] == "-"]
        # a pair's bar: the lowest of the tiers its evidence qualifies it for
        below = [_bar(rule, p["evidence"]) - p["cosine"] for p in pairs if not p["same"]]
        above = [p["cosine"] - _bar(rule, p["evidence"]) for p in pairs if p["same"] and p["tier"]]
        quality = tags.evaluate_on_seeds(SEEDS, embed_config=config)
        rows.append(
            {
                "backend": backend,
                "revision_pairs": sum(r["pairs"] for r in revisions),
                "revisions_accepted": sum(r["accepted_by_rule"] for r in revisions),
                "revisions_merged": sum(r["merged"] for r in revisions),
                "false_merges": sum(r["merged"] for r in distinct),
                # None: no distinct pair reaches the lowest bar at all
                "closest_distinct_below_bar": round(min(below), 4) if below else None,
                "closest_revision_above_bar": round(min(above), 4) if above else None,
                "topic_f1_zero_shot": round(quality["topics"]["f1"], 3),
                "topic_f1_head_kfold": round(quality["few_shot_cross_validated"]["f1"], 3),
                "paper_type_f1": round(quality["paper_types"]["f1"], 3),
            }
        )
    return rows


def _bar(rule: SemanticConfig, found: frozenset[str]) -> float:
    return min([rule.threshold, *(t.bar for t in EVIDENCE_TIERS if t.kinds & found)])


def onnx_pipeline(data: Path, output: Path, torch_pipeline_s: float) -> dict[str, Any] | None:
    """One pipeline run with ``--embedding_backend onnx`` (export done beforehand, untimed)."""
    if missing_runtime("onnx") is not None:
        return None
    ensure_exported(EmbedConfig().model_dir, default_cache_dir(), quantized=False)
    argv = run_args(data, output, "--embedding_backend=onnx")
    timing, summary = timed(lambda: run_pipeline(argv))
    return {
        "records": summary["records_parsed"],
        "embedded_texts": summary["embedded_texts"],
        "pipeline_s": round(timing.wall, 1),
        "model_s": round(inference_seconds(summary), 1),
        "speedup_vs_torch_pipeline": round(torch_pipeline_s / timing.wall, 2),
    }


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def section(settings: Settings, results: dict[str, Any]) -> None:
    config = GeneratorConfig(records=RECORDS, seed=settings.seed + 3)
    data = corpus(settings, "embeddings", config)
    output = settings.out / "runs" / "embeddings"
    row = pipeline_vs_encode(data, output)
    results["embeddings"] = row
    emit(
        results,
        render_table(
            "Whole pipeline with embeddings (default install: --embedding_backend "
            f"{DEFAULT_BACKEND}) vs model load + plain SentenceTransformer (torch) encode of its "
            f"canonical texts (same process, median of {row['pairs']} alternating pairs)",
            [
                "records",
                "canonical texts",
                "embedded_texts",
                "pipeline s (all)",
                "of which model s",
                "other s",
                "encode s (all)",
                "ratio (goal <= 0.6)",
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
    texts = canonical_texts(output)[:BACKEND_TEXTS]
    backends = backend_comparison(texts, settings.out / "cache")
    results["embedding_backends"] = backends
    emit(
        results,
        render_table(
            f"Embedding backends vs torch fp32 ({len(texts)} canonical texts, encode only, "
            f"median of {BACKEND_REPEATS} interleaved runs)",
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
    quality = backend_quality(settings.out / "cache")
    if quality:
        results["embedding_backend_quality"] = quality
        emit(
            results,
            render_table(
                "What each backend's vectors decide (same papers; revisions: hand-written pairs "
                "and seed versions, accepted by the rule / merged by the pipeline; false merges "
                "among distinct seed papers and near-misses; closest calls: the distinct pair "
                "nearest below its tier's bar, the accepted revision nearest above it; topics "
                "on the 298 labelled seed papers)",
                [
                    "backend",
                    "revisions accepted / merged",
                    "false merges",
                    "closest distinct, below bar",
                    "closest revision, above bar",
                    "topic F1 zero-shot",
                    "topic F1 head (5-fold)",
                    "paper types F1",
                ],
                [
                    [
                        q["backend"],
                        f"{q['revisions_accepted']} / {q['revisions_merged']} of "
                        f"{q['revision_pairs']}",
                        q["false_merges"],
                        _signed(q["closest_distinct_below_bar"]),
                        _signed(q["closest_revision_above_bar"]),
                        q["topic_f1_zero_shot"],
                        q["topic_f1_head_kfold"],
                        q["paper_type_f1"],
                    ]
                    for q in quality
                ],
            ),
        )
    onnx = onnx_pipeline(data, output, row["pipeline_s"])
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
