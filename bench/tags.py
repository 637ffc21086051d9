"""``make bench``, end of section ``embeddings``: topic tags on the labelled seed papers.

Micro precision/recall/F1 of the topics with the taxonomy's own settings, the best global
settings on this set (in-sample), zero-shot under k-fold cross-validation, and few-shot
(``--tag_examples``: the other folds as examples) under the same folds; and of the
survey/benchmark rules. Needs the seed dumps (skipped without them); the labels are
``tests/data/seed_topic_labels.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, SEEDS, Settings, emit, log, render_table
from transforms.enrich.embed import EmbedConfig, SentenceTransformerHandler
from transforms.enrich.tags.calibration import calibrate, evaluate_tags
from transforms.enrich.tags.evaluation import (
    cross_validate,
    cross_validate_few_shot,
    load_labels,
    title_key,
)
from transforms.enrich.tags.scoring import (
    build_prototypes,
    paper_type_tags,
    predict_topics,
    prototype_pairs,
    tag_scores,
)
from transforms.enrich.tags.taxonomy import HAS_CODE, Taxonomy, load_taxonomy
from transforms.ingest.parse import FileContext, parse_lines
from transforms.records import Record

DEFAULT_LABELS = REPO_ROOT / "tests" / "data" / "seed_topic_labels.jsonl"


def read_seed_papers(seeds_dir: str | Path) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """title_key -> (title, abstract, code_urls) of every paper in the seed dumps (``*.txt``),
    parsed by the pipeline's own parser so labels join on the titles the pipeline sees."""
    papers: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for path in sorted(Path(seeds_dir).glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for item in parse_lines(lines, FileContext(str(path))):
            if isinstance(item, Record):
                papers.setdefault(
                    title_key(item.title), (item.title, item.abstract, item.code_urls)
                )
    return papers


def labelled_seeds(
    seeds_dir: str | Path,
    labels_path: str | Path,
    taxonomy: Taxonomy,
    embed_config: EmbedConfig | None = None,
) -> tuple[list, list, np.ndarray, np.ndarray]:
    """The labels, the labelled seed papers found in the dumps ((label, (title, abstract,
    code_urls))), their embeddings (the pipeline's handler, model and text template) and
    their zero-shot topic scores."""
    labels = load_labels(labels_path, taxonomy)
    papers = read_seed_papers(seeds_dir)
    found = [
        (label, papers[title_key(label.title)])
        for label in labels
        if title_key(label.title) in papers
    ]
    if not found:
        raise ValueError(f"none of the {len(labels)} labelled titles is in {seeds_dir}")
    config = embed_config or EmbedConfig()
    handler = SentenceTransformerHandler(config)
    model = handler.load_model()
    texts = [config.text(title, abstract) for _, (title, abstract, _) in found]
    embeddings = np.stack(list(handler.run_inference(texts, model)))
    pairs = prototype_pairs(taxonomy)
    vectors = handler.run_inference([text for _, text in pairs], model)
    prototypes = build_prototypes(
        zip([name for name, _ in pairs], vectors, strict=True),
        taxonomy.names,
        taxonomy.scoring.center,
    )
    return labels, found, embeddings, tag_scores(embeddings, prototypes, taxonomy.scoring.top_k)


def evaluate_on_seeds(
    seeds_dir: str | Path,
    labels_path: str | Path = DEFAULT_LABELS,
    taxonomy: Taxonomy | None = None,
    embed_config: EmbedConfig | None = None,
    folds: int = 5,
) -> dict[str, Any]:
    """Tag the labelled seed papers with the real model and score them.

    Returns micro P/R/F1 of the topics with the taxonomy's own settings (``topics``), the
    best global settings on this set (``calibrated``, in-sample) and their k-fold estimate
    (``cross_validated``), the k-fold estimate with the other folds as ``--tag_examples``
    (``few_shot_cross_validated``), and of the survey/benchmark rules (``paper_types``). Embeds with
    the pipeline's handler outside Beam: same model, same text template.
    """
    taxonomy = taxonomy or load_taxonomy()
    labels, found, embeddings, scores = labelled_seeds(
        seeds_dir, labels_path, taxonomy, embed_config
    )
    gold = [label.topics for label, _ in found]
    names = taxonomy.names
    predicted = predict_topics(scores, names, taxonomy.assignment, taxonomy.thresholds())
    calibrated, calibrated_f1 = calibrate(scores, gold, names)
    types = [
        [t for t in paper_type_tags(title, abstract, urls, taxonomy.rules) if t != HAS_CODE]
        for _, (title, abstract, urls) in found
    ]
    return {
        "labelled": len(labels),
        "found": len(found),
        "topics": evaluate_tags(predicted, gold),
        "calibrated": {"assignment": calibrated, "f1": calibrated_f1},
        "cross_validated": cross_validate(scores, gold, names, folds),
        "few_shot_cross_validated": cross_validate_few_shot(embeddings, scores, gold, names, folds),
        "paper_types": evaluate_tags(types, [label.paper_type for label, _ in found]),
    }


def tag_quality(seeds_dir: Path = SEEDS) -> dict[str, Any] | None:
    """:func:`evaluate_on_seeds` on the seed dumps, or None when they are absent."""
    if not seeds_dir.is_dir():
        return None
    return evaluate_on_seeds(seeds_dir)


def section(settings: Settings, results: dict[str, Any]) -> None:
    quality = tag_quality()
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
            "Topic tags on the labelled seed papers (micro averages; topics: zero-shot with the "
            "taxonomy's settings, as --tag_head none; cross_validated: 5 folds; "
            "few_shot_cross_validated: each fold scored by a head trained on the other four, "
            "the recipe of the default --tag_head packaged, whose shipped weights saw all "
            "of these papers and so are not scored here)",
            ["setting", "precision", "recall", "F1"],
            table_rows,
        ),
    )
