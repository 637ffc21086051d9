"""Where the semantic-merge threshold comes from (``make bench``, section *semantic*).

Embeds, with the pipeline's model and text template, the invented revisions of
``tests/data/revisions.jsonl`` (v1/v2 pairs, plus distinct papers on the same topics) and
the distinct papers of the seed dumps, then compares:

* true revisions: cosine of each v1/v2 pair, their word 3-shingle Jaccard (why MinHash misses
  them), and whether they share a name (:func:`transforms.enrich.semantic.merges.paper_names`);
* distinct papers: the highest cosine of any two (cosine alone) and of two that share a name
  named by at most ``max_bucket`` papers (what the merge rule can accept).

Seed pairs that are versions of one work (same method, retitled) count as revisions, not as
distinct papers: :data:`KNOWN_SEED_REVISIONS`, found by reading the top pairs of this report.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, SEEDS, Settings, emit, log, render_table
from transforms.dedup.minhash import MinHashConfig, exact_jaccard, shingles
from transforms.enrich.embed import EmbedConfig, SentenceTransformerHandler
from transforms.enrich.semantic.names import paper_names
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.text import normalized_text, tokens

REVISIONS = REPO_ROOT / "tests" / "data" / "revisions.jsonl"

# Seed papers that are versions of one work: (earlier title, later title).
KNOWN_SEED_REVISIONS: frozenset[frozenset[str]] = frozenset(
    {
        frozenset(
            {
                "Utility-based Perturbed Gradient Descent: An Optimizer for Continual Learning",
                "Addressing Loss of Plasticity and Catastrophic Forgetting in Continual Learning",
            }
        ),
        # a journal extension: same abstract opening, new title and module names
        frozenset(
            {
                "Diffusion Models Beat GANs on Image Classification",
                "Do text-free diffusion models learn discriminative visual representations?",
            }
        ),
    }
)


@dataclass(frozen=True)
class Paper:
    key: str  # paper id: revisions share it
    title: str
    abstract: str
    source: str  # "revisions" or "seeds"


def load_revisions(path: Path = REVISIONS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def revision_papers(path: Path = REVISIONS) -> list[Paper]:
    return [
        Paper(row["paper"], row["title"], row["abstract"], "revisions")
        for row in load_revisions(path)
    ]


def seed_papers(seeds_dir: Path = SEEDS) -> list[Paper]:
    """One paper per distinct text of the seed dumps, keyed by title (parsed as the pipeline
    does); versions of one work listed in KNOWN_SEED_REVISIONS share a key."""
    from transforms.ingest.parse import FileContext, parse_lines
    from transforms.records import Record

    same_work = {title: min(pair) for pair in KNOWN_SEED_REVISIONS for title in pair}
    texts: dict[str, Record] = {}
    for path in sorted(Path(seeds_dir).glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for item in parse_lines(lines, FileContext(str(path))):
            if isinstance(item, Record):
                texts.setdefault(item.content_hash, item)
    return [
        Paper(same_work.get(r.title, " ".join(tokens(r.title))), r.title, r.abstract, "seeds")
        for _, r in sorted(texts.items())
    ]


def embed(papers: list[Paper], config: EmbedConfig | None = None) -> np.ndarray:
    """Unit vectors of the papers' texts, exactly as the pipeline embeds canonicals."""
    config = config or EmbedConfig()
    handler = SentenceTransformerHandler(config)
    model = handler.load_model()
    texts = [config.text(p.title, p.abstract) for p in papers]
    return np.stack(list(handler.run_inference(texts, model)))


def word_jaccard(a: Paper, b: Paper) -> float:
    config = MinHashConfig()
    return exact_jaccard(
        shingles(normalized_text(a.title, a.abstract).split(), config),
        shingles(normalized_text(b.title, b.abstract).split(), config),
    )


def measure(
    papers: list[Paper], vectors: np.ndarray, config: SemanticConfig | None = None
) -> dict[str, Any]:
    """Revision vs distinct-paper cosines, with and without the shared-name condition."""
    config = config or SemanticConfig()
    names = [paper_names(p.title, p.abstract) for p in papers]
    frequency = Counter(name for found in names for name in found)
    usable = [{n for n in found if frequency[n] <= config.max_bucket} for found in names]
    similarity = vectors @ vectors.T
    revisions, distinct_all, distinct_named = [], [], []
    for i, j in itertools.combinations(range(len(papers)), 2):
        a, b, cos = papers[i], papers[j], float(similarity[i, j])
        shared = sorted(usable[i] & usable[j])
        if a.key == b.key:
            revisions.append(
                {
                    "paper": a.key,
                    "source": a.source,
                    "cosine": round(cos, 4),
                    "jaccard": round(word_jaccard(a, b), 4),
                    "shared_names": shared,
                }
            )
        else:
            pair = {"a": a.title, "b": b.title, "cosine": round(cos, 4), "shared_names": shared}
            distinct_all.append(pair)
            if shared:
                distinct_named.append(pair)
    distinct_all.sort(key=lambda p: -p["cosine"])
    distinct_named.sort(key=lambda p: -p["cosine"])
    named = [r["cosine"] for r in revisions if r["shared_names"]]
    cosines = [r["cosine"] for r in revisions]
    max_named = distinct_named[0]["cosine"] if distinct_named else 0.0
    max_all = distinct_all[0]["cosine"]
    return {
        "papers": len(papers),
        "revision_pairs": len(revisions),
        "revisions_sharing_a_name": len(named),
        "revision_cosine_min": min(cosines),
        "revision_cosine_median": round(statistics.median(cosines), 4),
        "revision_cosine_max": max(cosines),
        "revision_named_cosine_min": min(named) if named else None,
        "revision_jaccard_max": max(r["jaccard"] for r in revisions),
        "distinct_cosine_max": max_all,
        "distinct_named_cosine_max": max_named,
        "margin_cosine_only": round(min(cosines) - max_all, 4),
        "margin_with_names": round(min(named) - max_named, 4) if named else None,
        "midpoint_with_names": round((min(named) + max_named) / 2, 4) if named else None,
        "threshold": config.threshold,
        "revisions_merged": sum(c >= config.threshold for c in named),
        "distinct_merged": sum(p["cosine"] >= config.threshold for p in distinct_named),
        "revisions": revisions,
        "top_distinct": distinct_all[:5],
        "top_distinct_named": distinct_named[:5],
    }


def semantic_margin(seeds_dir: Path = SEEDS) -> dict[str, Any] | None:
    """The measurement on revisions.jsonl + the seed dumps (None without the seeds)."""
    if not seeds_dir.is_dir() or not any(seeds_dir.glob("*.txt")):
        return None
    papers = revision_papers() + seed_papers(seeds_dir)
    return measure(papers, embed(papers))


def section(settings: Settings, results: dict[str, Any]) -> None:
    """Why --semantic_threshold is what it is: revision vs distinct-paper cosines."""
    measured = semantic_margin()
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
