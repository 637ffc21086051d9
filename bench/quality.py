"""``make bench`` section ``quality``: dedup quality on a generated corpus with ground truth.

The pipeline runs in-process with its default dedup options; its ``records`` table is joined
with ``ground_truth.jsonl`` through DuckDB on (file name, record_index). Pairwise precision /
recall / F1 count record pairs that share a paper (truth) and a cluster (prediction). Records of
the ``revision`` variant (a heavy rewrite, Jaccard 0.2-0.5 to its original by construction,
*not* meant to be merged at the default threshold) are left out of the pairs; how often they
are merged is reported apart. Per class: recall = share of its records clustered with their paper's original, and the
exact word-3-shingle Jaccard to that original (why a class is missed). Then a sweep over
thresholds and shingle kinds.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beam_jobs.launcher import run as run_pipeline
from beam_jobs.query import catalog
from beam_jobs.synthetic import GROUND_TRUTH_NAME, NEAR_DUP_CLASSES, GeneratorConfig
from bench.common import (
    Settings,
    corpus,
    corpus_stamp,
    default_minhash,
    emit,
    fmt,
    log,
    pipeline_argv,
    ratio,
    render_table,
)
from transforms.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    estimated_jaccard,
    exact_jaccard,
    shingles,
)
from transforms.text import normalized_text

# Ambiguous by design (see the module docstring): reported apart, not scored as pairs.
UNSCORED = frozenset({"revision", "missing_abstract"})
RECALL_CLASSES = ("exact", *NEAR_DUP_CLASSES, "revision")
WORD_SHINGLES = MinHashConfig()  # word 3-shingles: the unit the ground truth is defined in


def pairs(n: int) -> int:
    return n * (n - 1) // 2


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


def section(settings: Settings, results: dict[str, Any]) -> None:
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
