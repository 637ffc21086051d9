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
from transforms.enrich.semantic.vectors import VectorLSH, band_codes, sketch, vector_keys
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
    papers, vectors = tier_section(results)
    vector_section(results, papers, vectors)
    stage_section(settings, results)


# ----------------------------------------------------------------------------- the tiers


def rule_pairs(
    papers: list[Paper], vectors: np.ndarray, config: SemanticConfig | None = None
) -> list[dict[str, Any]]:
    """Every pair with cosine >= the rule's lowest bar: its cosine, evidence, whether it
    shares a blocking key (meets in a bucket: keys held by more than max_bucket papers do
    not count), and the tier that accepts it."""
    config = config or SemanticConfig()
    views = [paper_view(p.title, p.abstract) for p in papers]
    text_keys = [blocking_keys(p.title, p.abstract, v) for p, v in zip(papers, views, strict=True)]
    keys = [
        found | banded
        for found, banded in zip(text_keys, vector_keys(vectors, config.vectors), strict=True)
    ]
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
    # the same pairs blocked with vector keys too (--semantic_vector_bands)
    with_vectors = rule_pairs(papers, vectors, SemanticConfig(vectors=VectorLSH()))
    by_index = {p["index"]: p["meets"] for p in with_vectors}
    for p in pairs:
        p["meets_with_vectors"] = by_index[p["index"]]
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
                "merged_with_vectors": sum(
                    p["tier"] is not None and p["meets_with_vectors"] for p in found
                ),
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
                "merged_with_vectors": sum(
                    p["tier"] is not None and p["meets_with_vectors"] for p in mine
                ),
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


def tier_section(
    results: dict[str, Any], seeds_dir: Path = SEEDS
) -> tuple[list[Paper], np.ndarray]:
    papers = revision_papers(REVISIONS_BY_KIND) + revision_papers()
    if seeds_dir.is_dir() and any(seeds_dir.glob("*.txt")):
        papers += seed_papers(seeds_dir)
    vectors = embed(papers)
    measured = tier_tables(papers, vectors)
    results["semantic_tiers"] = measured
    emit(
        results,
        render_table(
            "Revision merge per kind: pairs the tiered rule accepts, and those the pipeline "
            "merges (the pair must also share a blocking key: of the texts by default, or of "
            f"the texts or vectors with --semantic_vector_bands {VectorLSH().bands}); distinct "
            "rows: false merges",
            ["kind", "pairs", "accepted by the rule", "merged", "merged with vector keys"],
            [
                [
                    r["kind"],
                    r["pairs"],
                    r["accepted_by_rule"],
                    r["merged"],
                    r["merged_with_vectors"],
                ]
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
    return papers, vectors


# ---------------------------------------------------------------------- the vector keys

# Settings compared for the vector keys (bits per band x bands); the default is among them.
VECTOR_SETTINGS = ((16, 64), (18, 96), (18, 128), (20, 128), (20, 176))
CURVE_COSINES = (0.80, 0.83, 0.86, 0.90, 0.95)
CURVE_PAIRS = 2_000
STAGE_WORKER = "_stage-worker"
STAGE_CANONICALS = (5_000, 20_000, 100_000)
# synthetic canonicals share one direction as much as the seed papers' embeddings do (mean
# pairwise cosine 0.42 measured on them): sqrt(0.42) of the mean direction, the rest noise
SHARED_DIRECTION = 0.42


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def at_cosine(rng: np.random.Generator, base: np.ndarray, target: float) -> np.ndarray:
    """Unit rows with exactly cosine ``target`` to the unit rows of ``base``."""
    other = rng.standard_normal(base.shape)
    other -= np.sum(other * base, axis=1, keepdims=True) * base
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    return target * base + np.sqrt(1.0 - target**2) * other


def measured_curve(lsh: VectorLSH, dim: int, seed: int = 5) -> list[float]:
    """Share of CURVE_PAIRS random pairs at each of CURVE_COSINES that share a band key."""
    rng = np.random.default_rng(seed)
    shares = []
    for target in CURVE_COSINES:
        base = unit_rows(rng, CURVE_PAIRS, dim)
        codes_a, codes_b = band_codes(base, lsh), band_codes(at_cosine(rng, base, target), lsh)
        shares.append(float(np.mean((codes_a == codes_b).any(axis=1))))
    return shares


def vector_tables(papers: list[Paper], vectors: np.ndarray) -> dict[str, Any]:
    """For each setting of VECTOR_SETTINGS: the collision curve (formula and measured on
    random pairs), the revisions the rule accepts that share a band key, and how full the
    buckets get: the chance two distinct seed papers share one band's key, times the
    corpus size, is the expected number of others in a canonical's bucket of that band."""
    config = SemanticConfig(vectors=VectorLSH())
    accepted = [
        p["index"]
        for p in rule_pairs(papers, vectors, config)
        if p["same"] and p["tier"] is not None
    ]
    seeds = np.array([i for i, p in enumerate(papers) if p.source == "seeds"])
    rows = []
    for bits, bands in VECTOR_SETTINGS:
        lsh = VectorLSH(bits=bits, bands=bands)
        codes = band_codes(vectors, lsh)
        found = sum(bool((codes[a] == codes[b]).any()) for a, b in accepted)
        rate = None
        if len(seeds) > 1:
            together = 0
            for band in range(bands):
                _, counts = np.unique(codes[seeds, band], return_counts=True)
                together += int((counts * (counts - 1)).sum())
            rate = together / bands / (len(seeds) * (len(seeds) - 1))
        rows.append(
            {
                "bits": bits,
                "bands": bands,
                "default": lsh == config.vectors,
                "formula": [round(lsh.collision_probability(c), 3) for c in CURVE_COSINES],
                "measured": [round(s, 3) for s in measured_curve(lsh, vectors.shape[1])],
                "accepted_revisions": len(accepted),
                "accepted_sharing_a_key": found,
                "bucket_at_100k": None if rate is None else round(rate * 100_000, 1),
                "bucket_at_1m": None if rate is None else round(rate * 1_000_000),
            }
        )
    return {"settings": rows}


def vector_section(results: dict[str, Any], papers: list[Paper], vectors: np.ndarray) -> None:
    measured = vector_tables(papers, vectors)
    results["semantic_vectors"] = measured
    cosines = " / ".join(f"{c:.2f}" for c in CURVE_COSINES)
    emit(
        results,
        render_table(
            "Vector keys: chance a pair shares a band key at cosine "
            f"{cosines} (formula; measured on {CURVE_PAIRS:,} random pairs each), revisions "
            "the rule accepts that share one, and the expected others in a bucket (rate of "
            "two distinct seed papers sharing a band key x corpus size; hotter buckets than "
            f"the cap of {SemanticConfig().max_bucket} are skipped)",
            [
                "bits x bands",
                "formula",
                "measured",
                "accepted revisions sharing a band key",
                "at 100k",
                "at 1M",
            ],
            [
                [
                    f"{r['bits']} x {r['bands']}" + (" (chosen)" if r["default"] else ""),
                    " ".join(f"{v:.3f}" for v in r["formula"]),
                    " ".join(f"{v:.3f}" for v in r["measured"]),
                    f"{r['accepted_sharing_a_key']} of {r['accepted_revisions']}",
                    "-" if r["bucket_at_100k"] is None else f"{r['bucket_at_100k']:.1f}",
                    "-" if r["bucket_at_1m"] is None else f"{r['bucket_at_1m']:,}",
                ]
                for r in measured["settings"]
            ],
        ),
    )


def stage_candidates(count: int, dim: int = 384, seed: int = 17) -> tuple[list, set]:
    """``count`` synthetic merge candidates (vectors only, no text: the stage is timed on
    its vector keys) sharing one direction as the seed papers do, 1 % of them planted at
    cosine 0.90-0.97 to another; (candidates, the planted (absorbed, into) pairs)."""
    from transforms.enrich.semantic.rule import Candidate

    rng = np.random.default_rng(seed)
    shared = unit_rows(rng, 1, dim)[0]
    planted = count // 100
    noise = unit_rows(rng, count - planted, dim)
    base = np.sqrt(SHARED_DIRECTION) * shared + np.sqrt(1 - SHARED_DIRECTION) * noise
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    targets = rng.uniform(0.90, 0.97, (planted, 1))
    near = at_cosine(rng, base[:planted], targets)
    vectors = np.concatenate([base, near]).astype(np.float32)
    lsh = VectorLSH()
    ids = [f"c{i:07d}" for i in range(count)]
    keys = vector_keys(vectors, lsh)
    candidates = [
        Candidate(ids[i], (i,), keys[i], vectors[i], sketch=sketch(vectors[i], lsh))
        for i in range(count)
    ]
    pairs = {(ids[count - planted + i], ids[i]) for i in range(planted)}
    return candidates, pairs


def stage_worker(result_path: str, count: int) -> None:
    """The child of one timed stage run: RevisionMerges over ``count`` synthetic candidates
    on the FnApiRunner (in-process), timed after the candidates are built."""
    import time

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from bench.reference import peak_rss_mib
    from transforms.enrich.semantic.merges import RevisionMerges

    candidates, planted = stage_candidates(count)
    started = time.perf_counter()
    found = beam.metrics.Metrics.counter("bench", "planted_found")

    def count_planted(pair: tuple[str, str]) -> None:
        if pair in planted:
            found.inc()

    options = PipelineOptions(["--runner=FnApiRunner"])
    with beam.Pipeline(options=options) as p:
        merges = (
            p
            | beam.Create(candidates, reshuffle=False)
            | RevisionMerges(SemanticConfig(vectors=VectorLSH()))
            | beam.MapTuple(lambda old, m: (old, m.into))
        )
        _ = merges | beam.Map(count_planted)
    seconds = time.perf_counter() - started
    result = p.result.metrics().query()["counters"]
    counters: Counter[str] = Counter()
    for found_counter in result:
        counters[found_counter.key.metric.name] += found_counter.committed
    document = {
        "canonicals": count,
        "seconds": round(seconds, 2),
        "peak_rss_mib": peak_rss_mib(),
        "planted": len(planted),
        "planted_found": counters.get("planted_found", 0),
        "merges": counters.get("merged_clusters", 0),
        "buckets": counters.get("buckets", 0),
        "skipped_buckets": counters.get("skipped_buckets", 0),
        "verified_pairs": counters.get("verified_pairs", 0),
        "sketch_dropped_pairs": counters.get("sketch_dropped_pairs", 0),
    }
    Path(result_path).write_text(json.dumps(document))


def stage_section(settings: Settings, results: dict[str, Any]) -> None:
    """The merge stage alone at STAGE_CANONICALS synthetic canonicals, each in a fresh
    process (the model is not involved: vectors are given)."""
    import sys

    from bench.common import measure_child

    rows = []
    for count in STAGE_CANONICALS:
        log(f"semantic: merge stage on {count:,} synthetic canonicals")
        work = settings.out / "semantic-stage"
        work.mkdir(parents=True, exist_ok=True)
        measured, _ = measure_child(
            [
                sys.executable,
                "-m",
                "bench.semantic",
                STAGE_WORKER,
                str(work / "r.json"),
                str(count),
            ],
            work / "r.json",
            work / f"stage-{count}.log",
        )
        rows.append(measured)
    results["semantic_stage"] = rows
    emit(
        results,
        render_table(
            "Semantic merge stage alone (RevisionMerges, FnApiRunner in-process; synthetic "
            "vectors sharing one direction like the seed papers', 1 % planted at cosine "
            "0.90-0.97; vector keys only, no names)",
            [
                "canonicals",
                "wall s",
                "peak RSS MiB",
                "buckets",
                "skipped",
                "pairs verified",
                "planted found",
                "merges",
            ],
            [
                [
                    f"{r['canonicals']:,}",
                    f"{r['seconds']:.1f}",
                    f"{r['peak_rss_mib']:,.0f}",
                    f"{r['buckets']:,}",
                    f"{r['skipped_buckets']:,}",
                    f"{r['verified_pairs']:,}",
                    f"{r['planted_found']} of {r['planted']}",
                    f"{r['merges']:,}",
                ]
                for r in rows
            ],
        ),
    )


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == STAGE_WORKER:
        stage_worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"usage: python -m bench.semantic {STAGE_WORKER} RESULT.json CANONICALS")
