"""The few-shot head (``--tag_examples``): a ridge regression per topic on the embedding,
blended into the zero-shot scores and calibrated on out-of-fold scores of the examples; and
:func:`build_tag_model`, the prototypes plus that head, built once per pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from transforms.enrich.embed import EmbedConfig
from transforms.enrich.tags.calibration import calibrate
from transforms.enrich.tags.scoring import Prototypes, build_prototypes, tag_scores
from transforms.enrich.tags.taxonomy import HEAD_FOLDS, Assignment, TagExample, Taxonomy

# Example texts travel through the prototypes' embedding branch under this key.
EXAMPLE_KEY = "tag-example"
# Chosen by 5-fold cross-validation on the 298 labelled seed papers (docs/benchmarks.md):
# ridge 0.3-3 and blend 0.3-0.6 all scored 0.80-0.81 micro-F1 against 0.76 zero-shot.
HEAD_RIDGE = 1.0
HEAD_BLEND = 0.3
MIN_TOPIC_EXAMPLES = 3


@dataclass(frozen=True)
class TagHead:
    """A linear head trained on labelled examples, added to the zero-shot scores.

    ``weights`` ((dim + 1) x topics) regress each topic's 0/1 label on the embedding (ridge,
    closed form, one column per topic). The few-shot score of a topic is its zero-shot score
    plus ``blend`` x (head output - 0.5) for topics with at least
    :data:`MIN_TOPIC_EXAMPLES` examples (``active``); other topics keep the zero-shot score.
    ``assignment`` is calibrated on out-of-fold scores of the examples, never in-sample.
    """

    weights: np.ndarray
    active: np.ndarray
    blend: float
    assignment: Assignment

    def scores(self, embedding: np.ndarray, zero_shot: np.ndarray) -> np.ndarray:
        head = ridge_predict(self.weights, np.asarray(embedding, dtype=np.float32))
        return blend_scores(zero_shot, head, self.active, self.blend)


def example_pairs(examples: Sequence[TagExample], config: EmbedConfig) -> list[tuple[Any, str]]:
    """((EXAMPLE_KEY, index), text) for every example: embedded with the prototypes."""
    return [((EXAMPLE_KEY, i), config.text(e.title, e.abstract)) for i, e in enumerate(examples)]


def label_matrix(label_sets: Sequence[Iterable[str]], names: Sequence[str]) -> np.ndarray:
    """Papers x topics 0/1 matrix."""
    index = {name: i for i, name in enumerate(names)}
    y = np.zeros((len(label_sets), len(names)), dtype=np.float32)
    for row, labels in enumerate(label_sets):
        for label in labels:
            y[row, index[label]] = 1.0
    return y


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float = HEAD_RIDGE) -> np.ndarray:
    """Ridge regression weights ((dim + 1) x targets; last row: unpenalised bias)."""
    xa = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    penalty = ridge * np.eye(xa.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + penalty, xa.T @ y).astype(np.float32)


def ridge_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ weights[:-1] + weights[-1]


def out_of_fold_predictions(
    x: np.ndarray, y: np.ndarray, ridge: float = HEAD_RIDGE, folds: int = HEAD_FOLDS
) -> np.ndarray:
    """Each row predicted by a head trained without it (row i is in fold i % folds)."""
    out = np.zeros(y.shape, dtype=np.float32)
    fold_of = np.arange(len(x)) % folds
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        out[test] = ridge_predict(fit_ridge(x[train], y[train], ridge), x[test])
    return out


def blend_scores(
    zero_shot: np.ndarray, head: np.ndarray, active: np.ndarray, blend: float = HEAD_BLEND
) -> np.ndarray:
    return zero_shot + blend * np.where(active, head - 0.5, 0.0)


def fit_tag_head(
    vectors: np.ndarray,
    label_sets: Sequence[Iterable[str]],
    zero_shot: np.ndarray,
    names: Sequence[str],
    ridge: float = HEAD_RIDGE,
    blend: float = HEAD_BLEND,
) -> TagHead:
    """Train the head on labelled examples (``vectors``, their ``zero_shot`` scores) and
    calibrate (threshold, margin, max_topics) on their out-of-fold few-shot scores."""
    y = label_matrix(label_sets, names)
    active = y.sum(axis=0) >= MIN_TOPIC_EXAMPLES
    folds = min(HEAD_FOLDS, len(vectors))
    oof = blend_scores(zero_shot, out_of_fold_predictions(vectors, y, ridge, folds), active, blend)
    assignment, _ = calibrate(oof, [set(labels) for labels in label_sets], names)
    return TagHead(fit_ridge(vectors, y, ridge), active, blend, assignment)


def build_tag_model(embedded: Iterable[tuple[Any, np.ndarray]], taxonomy: Taxonomy) -> Prototypes:
    """``BuildPrototypes``: the taxonomy's prototypes, plus the head trained on the embedded
    examples when the taxonomy has any (keys ``(EXAMPLE_KEY, index)``)."""
    texts, examples = [], {}
    for key, vector in embedded:
        if isinstance(key, tuple) and key[0] == EXAMPLE_KEY:
            examples[key[1]] = np.asarray(vector, dtype=np.float32)
        else:
            texts.append((key, vector))
    prototypes = build_prototypes(texts, taxonomy.names, taxonomy.scoring.center)
    if not taxonomy.examples:
        return prototypes
    if sorted(examples) != list(range(len(taxonomy.examples))):
        raise ValueError(f"{len(examples)} of {len(taxonomy.examples)} tag examples embedded")
    vectors = np.stack([examples[i] for i in range(len(taxonomy.examples))])
    zero = tag_scores(vectors, prototypes, taxonomy.scoring.top_k)
    labels = [example.topics for example in taxonomy.examples]
    return dataclasses.replace(prototypes, head=fit_tag_head(vectors, labels, zero, taxonomy.names))
