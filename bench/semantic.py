"""Where the revision rule's bars come from (``make bench``, section *semantic*).

Embeds, with the pipeline's model and text template, the invented revisions of
``tests/data/revisions_by_kind.jsonl`` (v1/v2 pairs of four kinds, plus distinct near-miss
papers) and ``tests/data/revisions.jsonl``, and the distinct papers of the seed dumps, then
prints, for the tiered rule of :mod:`transforms.enrich.semantic.rule`:

* recall per kind of revision, for the rule alone and with the blocking keys (what the
  pipeline merges), and false merges among distinct pairs;
* the margin per evidence kind: the lowest cosine of a revision having it against the highest
  of two distinct papers having it;
* the 20 closest distinct pairs with their evidence and tier.

Seed pairs that are versions of one work (same method, retitled) count as revisions, not as
distinct papers: :data:`KNOWN_SEED_REVISIONS`, found by reading the top pairs of this report.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, SEEDS, Settings, emit, log, render_table
from transforms.dedup.minhash import MinHashConfig, exact_jaccard, shingles
from transforms.enrich.embed import EmbedConfig, SentenceTransformerHandler
from transforms.enrich.semantic.evidence import (
    EVIDENCE_KINDS,
    blocking_keys,
    evidence,
    paper_view,
    title_run_keys,
)
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.text import normalized_text, tokens

REVISIONS = REPO_ROOT / "tests" / "data" / "revisions.jsonl"
# Hand-written, invented v1/v2 pairs of each kind, plus distinct near-miss papers (kind
# "distinct", each its own paper): never calibrated on, only measured.
REVISIONS_BY_KIND = REPO_ROOT / "tests" / "data" / "revisions_by_kind.jsonl"

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
    kind: str = ""  # revisions_by_kind.jsonl: the kind of revision ("distinct": none)


def load_revisions(path: Path = REVISIONS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def revision_papers(path: Path = REVISIONS) -> list[Paper]:
    return [
        Paper(row["paper"], row["title"], row["abstract"], "revisions", row.get("kind", ""))
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


def section(settings: Settings, results: dict[str, Any]) -> None:
    """Where the merge rule's bars come from, and what it finds per kind of revision."""
    if not SEEDS.is_dir() or not any(SEEDS.glob("*.txt")):
        log("seed dumps absent: the distinct seed pairs are left out of the margins")
    tier_section(results)


# ----------------------------------------------------------------------------- the tiers


def rule_pairs(
    papers: list[Paper], vectors: np.ndarray, config: SemanticConfig | None = None
) -> list[dict[str, Any]]:
    """Every pair with cosine >= the rule's lowest bar: its cosine, evidence, whether it
    shares a blocking key (meets in a bucket: keys held by more than max_bucket papers do
    not count), and the tier that accepts it."""
    config = config or SemanticConfig()
    views = [paper_view(p.title, p.abstract) for p in papers]
    keys = [blocking_keys(p.title, p.abstract, v) for p, v in zip(papers, views, strict=True)]
    holders = Counter(k for found in keys for k in found)
    usable = [{k for k in found if holders[k] <= config.max_bucket} for found in keys]
    # as RevisionMerges pairs: a key that is only a part of both titles pairs nothing
    parts = [{k for k, part in title_run_keys(v).items() if part} for v in views]
    similarity = vectors @ vectors.T
    pairs = []
    for i, j in zip(*np.nonzero(np.triu(similarity >= config.lowest_bar, k=1)), strict=True):
        cos = float(similarity[i, j])
        found = evidence(views[i], views[j])
        a, b = papers[i], papers[j]
        pairs.append(
            {
                "same": a.key == b.key,
                "kind": (a.kind or a.source) if a.key == b.key else f"distinct ({a.source})",
                "cosine": cos,
                "evidence": found,
                "meets": bool((usable[i] & usable[j]) - (parts[i] & parts[j])),
                "tier": config.tier(cos, found),
                "titles": (a.title, b.title),
                "index": (int(i), int(j)),
            }
        )
    return pairs


def tier_tables(papers: list[Paper], vectors: np.ndarray) -> dict[str, Any]:
    """Recall per kind of revision and false merges among distinct pairs, for the rule alone
    and with the blocking (what the pipeline merges), plus the margin per evidence kind."""
    config = SemanticConfig()
    pairs = rule_pairs(papers, vectors, config)
    revision_keys = Counter(p.key for p in papers)
    kinds = Counter(p.kind or p.source for p in papers if revision_keys[p.key] == 2)
    per_kind = []
    for kind in sorted(kinds):
        total = kinds[kind] // 2
        found = [p for p in pairs if p["same"] and p["kind"] == kind]
        per_kind.append(
            {
                "kind": kind,
                "pairs": total,
                "accepted_by_rule": sum(p["tier"] is not None for p in found),
                "merged": sum(p["tier"] is not None and p["meets"] for p in found),
            }
        )
    distinct = [p for p in pairs if not p["same"]]
    for source in sorted({p["kind"] for p in distinct}):
        mine = [p for p in distinct if p["kind"] == source]
        per_kind.append(
            {
                "kind": source,
                "pairs": "-",
                "accepted_by_rule": sum(p["tier"] is not None for p in mine),
                "merged": sum(p["tier"] is not None and p["meets"] for p in mine),
            }
        )
    similarity = vectors @ vectors.T
    margins = []
    for kind in ("none", *EVIDENCE_KINDS):

        def has(p: dict[str, Any], kind: str = kind) -> bool:
            return not p["evidence"] if kind == "none" else kind in p["evidence"]

        same = [p["cosine"] for p in pairs if p["same"] and has(p)]
        other = [p["cosine"] for p in distinct if has(p)]
        margins.append(
            {
                "evidence": kind,
                "revisions_with_it": len(same),
                "revision_min": round(min(same), 3) if same else None,
                "distinct_max": round(max(other), 3) if other else f"< {config.lowest_bar}",
            }
        )
    top = sorted(distinct, key=lambda p: -p["cosine"])[:20]
    del similarity
    return {
        "per_kind": per_kind,
        "margins": margins,
        "top_distinct": [
            {
                "cosine": round(p["cosine"], 3),
                "evidence": sorted(p["evidence"]),
                "tier": p["tier"],
                "a": p["titles"][0],
                "b": p["titles"][1],
            }
            for p in top
        ],
    }


def tier_section(results: dict[str, Any], seeds_dir: Path = SEEDS) -> None:
    papers = revision_papers(REVISIONS_BY_KIND) + revision_papers()
    if seeds_dir.is_dir() and any(seeds_dir.glob("*.txt")):
        papers += seed_papers(seeds_dir)
    measured = tier_tables(papers, embed(papers))
    results["semantic_tiers"] = measured
    emit(
        results,
        render_table(
            "Revision merge per kind: pairs the tiered rule accepts, and those the pipeline "
            "merges (the pair must also share a blocking key); distinct rows: false merges",
            ["kind", "pairs", "accepted by the rule", "merged"],
            [
                [r["kind"], r["pairs"], r["accepted_by_rule"], r["merged"]]
                for r in measured["per_kind"]
            ],
        ),
    )
    emit(
        results,
        render_table(
            "Margins per evidence kind: lowest cosine of a revision having it vs highest of "
            f"two distinct papers having it (pairs below {SemanticConfig().lowest_bar} not listed)",
            ["evidence", "revisions with it", "revision min", "distinct max"],
            [
                [m["evidence"], m["revisions_with_it"], m["revision_min"], m["distinct_max"]]
                for m in measured["margins"]
            ],
        ),
    )
    emit(
        results,
        render_table(
            "Closest distinct pairs (seed dumps and hand-written near-misses) and their tier",
            ["cosine", "evidence", "tier", "paper a", "paper b"],
            [
                [
                    p["cosine"],
                    ",".join(p["evidence"]) or "-",
                    p["tier"] or "-",
                    p["a"][:45],
                    p["b"][:45],
                ]
                for p in measured["top_distinct"]
            ],
        ),
    )
