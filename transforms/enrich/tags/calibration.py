"""Scoring predicted tags against labels (micro precision/recall/F1) and calibrating the
three assignment numbers (threshold, margin, max_topics) on labelled scores. Used when the
pipeline trains a few-shot head (:mod:`transforms.enrich.tags.head`) and by the evaluation."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from transforms.enrich.tags.scoring import predict_topics
from transforms.enrich.tags.taxonomy import Assignment


def evaluate_tags(
    predicted: Sequence[Iterable[str]], gold: Sequence[Iterable[str]]
) -> dict[str, Any]:
    """Micro precision/recall/F1 over (paper, tag) pairs, plus per-tag F1 and counts."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold label sets")
    per_tag: dict[str, list[int]] = {}
    tp = fp = fn = 0
    for pred, true in zip(predicted, gold, strict=True):
        pred, true = set(pred), set(true)
        for tag in pred | true:
            counts = per_tag.setdefault(tag, [0, 0, 0])
            counts[0] += tag in pred and tag in true
            counts[1] += tag in pred and tag not in true
            counts[2] += tag in true and tag not in pred
        tp += len(pred & true)
        fp += len(pred - true)
        fn += len(true - pred)
    precision, recall, f1 = _prf(tp, fp, fn)
    return {
        "papers": len(gold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "per_tag": {tag: round(_prf(*c)[2], 4) for tag, c in sorted(per_tag.items())},
        "support": {tag: c[0] + c[2] for tag, c in sorted(per_tag.items())},
    }


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# Steps of 0.02: finer steps only separate settings that differ on a paper or two of the set.
THRESHOLD_GRID = tuple(round(float(x), 2) for x in np.arange(0.0, 0.61, 0.02))
MARGIN_GRID = tuple(round(float(x), 2) for x in np.arange(0.0, 0.41, 0.02))
MAX_TOPICS_GRID = (1, 2, 3)


def calibrate(
    scores: np.ndarray, gold: Sequence[Iterable[str]], names: Sequence[str]
) -> tuple[Assignment, float]:
    """Global (threshold, margin, max_topics) maximising micro-F1 on ``scores``/``gold``.

    Global rather than per topic: with a few dozen labelled papers per topic, per-topic
    settings fit the sample (better in-sample, worse cross-validated; docs/benchmarks.md).
    """
    best: tuple[float, Assignment] | None = None
    for threshold, margin, max_topics in itertools.product(
        THRESHOLD_GRID, MARGIN_GRID, MAX_TOPICS_GRID
    ):
        assignment = Assignment(threshold, margin, max_topics)
        f1 = evaluate_tags(predict_topics(scores, names, assignment), gold)["f1"]
        if best is None or f1 > best[0] + 1e-9:
            best = (f1, assignment)
    assert best is not None
    return best[1], best[0]
