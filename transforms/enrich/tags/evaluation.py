"""Measuring the tagger offline: labelled papers (:func:`load_labels`) and k-fold estimates of
micro-F1, zero-shot (:func:`cross_validate`) and few-shot (:func:`cross_validate_few_shot`).
The pipeline never imports this module; ``make bench`` (:mod:`bench.tags`) and tests do."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transforms.enrich.tags.calibration import calibrate, evaluate_tags
from transforms.enrich.tags.head import fit_tag_head
from transforms.enrich.tags.scoring import predict_topics
from transforms.enrich.tags.taxonomy import BENCHMARK, SURVEY, Taxonomy, load_taxonomy
from transforms.text import tokens


@dataclass(frozen=True)
class LabelledPaper:
    title: str
    topics: frozenset[str]
    paper_type: frozenset[str]


def load_labels(path: str | Path, taxonomy: Taxonomy | None = None) -> list[LabelledPaper]:
    """Read the labelled seed set (JSON lines: title, topics, paper_type), validating names.

    Labelling conventions of ``tests/data/seed_topic_labels.jsonl`` (one annotator, from
    title + abstract): 1-3 topics for what the paper is *about*, not every tool it uses;
    ``generative-models`` excludes pure diffusion work; ``multimodal`` when the text-image link
    is the subject (text-to-image generation or control, CLIP, VLMs), not for safety work
    that merely uses text-to-image models; ``computer-vision`` for vision tasks, not image
    synthesis. Most papers were picked to cover every topic; the rest are random seed papers
    added after the taxonomy was tuned (how they scored before: docs/benchmarks.md).
    """
    names = set((taxonomy or load_taxonomy()).names)
    labels = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        unknown = (set(row["topics"]) - names) | (set(row["paper_type"]) - {SURVEY, BENCHMARK})
        if unknown or not row["topics"]:
            raise ValueError(f"{path}:{number}: unknown or missing labels {sorted(unknown)}")
        labels.append(
            LabelledPaper(row["title"], frozenset(row["topics"]), frozenset(row["paper_type"]))
        )
    return labels


def title_key(title: str) -> str:
    """Match key for titles: case-folded tokens, so scrape noise does not break the join."""
    return " ".join(tokens(title))


def cross_validate(
    scores: np.ndarray, gold: Sequence[Iterable[str]], names: Sequence[str], folds: int = 5
) -> dict[str, Any]:
    """k-fold estimate of micro-F1 for :func:`calibrate` (calibrate on k-1 folds, predict the
    held-out fold, pool all held-out predictions). Deterministic: paper i is in fold i % k."""
    gold = [set(g) for g in gold]
    predicted: list[list[str]] = [[] for _ in gold]
    chosen = []
    for fold in range(folds):
        train = [i for i in range(len(gold)) if i % folds != fold]
        test = [i for i in range(len(gold)) if i % folds == fold]
        assignment, _ = calibrate(scores[train], [gold[i] for i in train], names)
        chosen.append(assignment)
        for i, tags in zip(test, predict_topics(scores[test], names, assignment), strict=True):
            predicted[i] = tags
    return {**evaluate_tags(predicted, gold), "assignments": chosen}


def cross_validate_few_shot(
    vectors: np.ndarray,
    zero_shot: np.ndarray,
    gold: Sequence[Iterable[str]],
    names: Sequence[str],
    folds: int = 5,
) -> dict[str, Any]:
    """k-fold estimate of micro-F1 with ``--tag_examples``: the training folds are the
    examples (:func:`fit_tag_head`: head + calibration on their out-of-fold scores), the
    held-out fold is tagged. Same folds as :func:`cross_validate` (paper i in fold i % k), so
    the two estimates compare zero-shot and few-shot on identical splits."""
    gold = [set(g) for g in gold]
    predicted: list[list[str]] = [[] for _ in gold]
    for fold in range(folds):
        train = [i for i in range(len(gold)) if i % folds != fold]
        test = [i for i in range(len(gold)) if i % folds == fold]
        head = fit_tag_head(vectors[train], [gold[i] for i in train], zero_shot[train], names)
        scores = head.scores(vectors[test], zero_shot[test])
        for i, tags in zip(test, predict_topics(scores, names, head.assignment), strict=True):
            predicted[i] = tags
    return evaluate_tags(predicted, gold)
