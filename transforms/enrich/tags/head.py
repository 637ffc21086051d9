"""The few-shot head: a ridge regression per topic on the embedding, blended into the
zero-shot scores and calibrated on out-of-fold scores of labelled examples; and
:func:`build_tag_model`, the prototypes plus that head, built once per pipeline.

The head comes from ``--tag_examples`` (trained in the pipeline) or, by default, from the
packaged ``tag_head.npz``: weights trained by ``python -m bench.train_head`` on the labelled
seed papers (``tests/data/seed_topic_labels.jsonl``; numbers only, no text of theirs ships).
It is valid for the packaged model, text template and taxonomy only: the file records their
fingerprints and :func:`packaged_head_applies` checks them. Its out-of-sample quality is the
k-fold figure of ``make bench`` (section *tags*, "few_shot_cross_validated": the same recipe
trained without the fold it is scored on).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
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
PACKAGED_HEAD = Path(__file__).with_name("tag_head.npz")


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


def taxonomy_identity(taxonomy: Taxonomy) -> str:
    """What a head's zero-shot inputs depend on: the topics, their texts and the scoring."""
    plain = dataclasses.replace(taxonomy, examples=(), packaged_head=None)
    return hashlib.sha256(repr((plain.topics, plain.scoring)).encode("utf-8")).hexdigest()


def embedding_identity(config: EmbedConfig) -> str:
    """What a head's inputs depend on of the embedding: the model and the embedded text."""
    model = "packaged" if config.model is None else config.model
    return f"{model}|{config.max_seq_length}|{config.text_template}"


def save_head(path: Path, head: TagHead, taxonomy: Taxonomy, config: EmbedConfig) -> None:
    a = head.assignment
    with open(path, "wb") as fh:
        np.savez(
            fh,
            weights=head.weights,
            active=head.active,
            blend=np.float32(head.blend),
            assignment=np.array([a.threshold, a.margin, a.max_topics], dtype=np.float64),
            names=np.array(taxonomy.names),
            taxonomy=np.array(taxonomy_identity(taxonomy)),
            embedding=np.array(embedding_identity(config)),
        )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def packaged_head_applies(
    taxonomy: Taxonomy, config: EmbedConfig, path: Path = PACKAGED_HEAD
) -> bool:
    """Whether the packaged head was trained for this taxonomy and embedding."""
    if not path.is_file():
        return False
    with np.load(path) as data:
        return (
            str(data["taxonomy"]) == taxonomy_identity(taxonomy)
            and str(data["embedding"]) == embedding_identity(config)
            and tuple(data["names"].tolist()) == taxonomy.names
        )


def load_head(path: Path, expected_sha256: str | None = None) -> TagHead:
    """The head stored in ``path``; refuses a file other than the one the run planned with."""
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise ValueError(f"{path} changed since the run was configured")
    with np.load(path) as data:
        threshold, margin, max_topics = data["assignment"].tolist()
        return TagHead(
            weights=data["weights"].astype(np.float32),
            active=data["active"].astype(bool),
            blend=float(data["blend"]),
            assignment=Assignment(float(threshold), float(margin), int(max_topics)),
        )


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
        if taxonomy.packaged_head is None:
            return prototypes
        return dataclasses.replace(
            prototypes, head=load_head(PACKAGED_HEAD, taxonomy.packaged_head)
        )
    if sorted(examples) != list(range(len(taxonomy.examples))):
        raise ValueError(f"{len(examples)} of {len(taxonomy.examples)} tag examples embedded")
    vectors = np.stack([examples[i] for i in range(len(taxonomy.examples))])
    zero = tag_scores(vectors, prototypes, taxonomy.scoring.top_k)
    labels = [example.topics for example in taxonomy.examples]
    return dataclasses.replace(prototypes, head=fit_tag_head(vectors, labels, zero, taxonomy.names))
