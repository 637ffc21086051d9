"""How one paper gets its tags: zero-shot topic scores against the embedded prototype texts
(:func:`tag_scores`), scores to topics (:func:`assign_topics`), the paper-type rules
(:func:`paper_type_tags`), and :func:`tag_paper`, which combines them (with a few-shot head
when there is one). Pure: numpy in, Python out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from transforms.enrich.tags.taxonomy import (
    BENCHMARK,
    HAS_CODE,
    SURVEY,
    Assignment,
    PaperTypeRules,
    Taxonomy,
    load_taxonomy,
)


class Head(Protocol):
    """What tagging needs of a trained few-shot head (:class:`transforms.enrich.tags.head.TagHead`):
    its scores replace the zero-shot ones, its calibrated assignment the taxonomy's. A protocol
    rather than the class itself because training the head needs this module."""

    @property
    def assignment(self) -> Assignment: ...

    def scores(self, embedding: np.ndarray, zero_shot: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Prototypes:
    """The embedded prototype texts of every topic, ready for scoring.

    ``center`` is the mean embedding of all prototype texts; subtracting it before the cosine
    removes what every ML text shares, so scores measure the *topic* part (data-free: it
    depends on the taxonomy only, never on the corpus being tagged). ``texts`` holds the
    centred, normalised text vectors, ``topic_of`` the topic index of each row, and
    ``matrix`` the classic prototypes: normalised mean of each topic's rows.
    """

    names: tuple[str, ...]
    center: np.ndarray
    texts: np.ndarray
    topic_of: np.ndarray
    matrix: np.ndarray
    head: Head | None = None


def prototype_pairs(taxonomy: Taxonomy) -> list[tuple[str, str]]:
    """(topic, text) for every description and example: the texts to embed once."""
    return [(t.name, text) for t in taxonomy.topics for text in t.prototype_texts()]


def build_prototypes(
    embedded: Iterable[tuple[str, np.ndarray]], names: Sequence[str], center: bool = True
) -> Prototypes:
    """Centre, normalise and group the embedded prototype texts by topic.

    Fails loudly if a topic got no vector (its texts were dead-lettered): tagging with a
    missing topic would be silently wrong.
    """
    index = {name: i for i, name in enumerate(names)}
    rows: list[np.ndarray] = []
    topic_of: list[int] = []
    for name, vector in embedded:
        if name not in index:
            raise ValueError(f"embedded prototype text for unknown topic {name!r}")
        rows.append(np.asarray(vector, dtype=np.float32))
        topic_of.append(index[name])
    missing = sorted(set(names) - {names[i] for i in topic_of})
    if missing:
        raise ValueError(f"no embedded prototype texts for topics {missing}")
    order = np.argsort(topic_of, kind="stable")
    vectors = np.stack(rows)[order]
    topics = np.asarray(topic_of, dtype=np.int32)[order]
    mean = vectors.mean(axis=0) if center else np.zeros(vectors.shape[1], np.float32)
    texts = _unit(vectors - mean)
    matrix = _unit(np.stack([texts[topics == k].mean(axis=0) for k in range(len(names))]))
    return Prototypes(tuple(names), mean.astype(np.float32), texts, topics, matrix)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def tag_scores(embedding: np.ndarray, prototypes: Prototypes, top_k: int = 3) -> np.ndarray:
    """Topic scores of one paper (shape: topics) or many (papers x topics).

    Score = mean cosine of the centred paper embedding with the ``top_k`` nearest prototype
    texts of the topic. Broad topics have several facets (multimodal: CLIP-style models *and*
    text-to-image generation); averaging all of them into one prototype dilutes a paper that
    matches one facet strongly, the top-k mean does not. ``top_k=0`` scores against the
    classic mean prototype (``prototypes.matrix``) instead.
    """
    x = _unit(np.asarray(embedding, dtype=np.float32) - prototypes.center)
    if top_k == 0:
        return x @ prototypes.matrix.T
    sims = x @ prototypes.texts.T
    columns = []
    for k in range(len(prototypes.names)):
        topic = sims[..., prototypes.topic_of == k]
        kk = min(top_k, topic.shape[-1])
        columns.append(np.sort(topic, axis=-1)[..., -kk:].mean(axis=-1))
    return np.stack(columns, axis=-1)


def assign_topics(
    scores: np.ndarray,
    names: Sequence[str],
    thresholds: np.ndarray | float,
    margin: float,
    max_topics: int,
) -> list[str]:
    """Topics for one paper, best first.

    The best topic always (a paper is about *something*); others when they pass their
    threshold *and* are within ``margin`` of the best: the margin keeps a paper whose scores
    are all high (long, generic abstracts) from collecting every topic, the threshold keeps a
    distant runner-up out. At most ``max_topics``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    best = scores[order[0]]
    limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), scores.shape)
    chosen = [names[order[0]]]
    for index in order[1:max_topics]:
        if scores[index] >= limits[index] and scores[index] >= best - margin:
            chosen.append(names[index])
    return chosen


def predict_topics(
    scores: np.ndarray, names: Sequence[str], assignment: Assignment, thresholds=None
) -> list[list[str]]:
    """:func:`assign_topics` over a papers x topics score matrix."""
    limits = assignment.threshold if thresholds is None else thresholds
    return [
        assign_topics(row, names, limits, assignment.margin, assignment.max_topics)
        for row in scores
    ]


def paper_type_tags(
    title: str, abstract: str, code_urls: Sequence[str], rules: PaperTypeRules | None = None
) -> list[str]:
    """``survey`` / ``benchmark`` / ``has-code`` by the rules of the taxonomy file.

    ``has-code``: digests keep an abstract's links to code and project pages, so any link that
    is not a citation (arXiv, DOI, Wikipedia: ``ignore_urls``) counts.
    """
    rules = rules or _packaged_taxonomy().rules
    tags = []
    if _matches(rules.survey_title, title) or _matches(rules.survey_abstract, abstract):
        tags.append(SURVEY)
    lead = abstract[: rules.benchmark_lead_chars]
    if _matches(rules.benchmark_title, title) or _matches(rules.benchmark_abstract, lead):
        tags.append(BENCHMARK)
    if any(not _matches(rules.ignore_urls, url) for url in code_urls):
        tags.append(HAS_CODE)
    return tags


@functools.cache
def _packaged_taxonomy() -> Taxonomy:
    return load_taxonomy()


def _matches(patterns: Sequence[re.Pattern[str]], text: str) -> bool:
    return any(p.search(text) for p in patterns)


def tag_paper(
    embedding: np.ndarray,
    title: str,
    abstract: str,
    code_urls: Sequence[str],
    taxonomy: Taxonomy,
    prototypes: Prototypes,
) -> tuple[list[str], list[tuple[str, float]]]:
    """(topics + paper types, [(topic, score)] in taxonomy order) for one paper.

    With a head (``--tag_examples``) the scores are the few-shot ones and the assignment is
    the one calibrated on the examples; otherwise the taxonomy's zero-shot settings.
    """
    scores = tag_scores(embedding, prototypes, taxonomy.scoring.top_k)
    a, thresholds = taxonomy.assignment, taxonomy.thresholds()
    if prototypes.head is not None:
        scores = prototypes.head.scores(embedding, scores)
        a = prototypes.head.assignment
        thresholds = np.float32(a.threshold)
    topics = assign_topics(scores, prototypes.names, thresholds, a.margin, a.max_topics)
    types = paper_type_tags(title, abstract, code_urls, taxonomy.rules)
    return topics + types, [
        (n, round(float(s), 4)) for n, s in zip(prototypes.names, scores, strict=True)
    ]
