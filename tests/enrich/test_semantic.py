"""Semantic merge of revisions: the pure rule, the Beam composites, and the whole pipeline
on invented revisions (tests/data/revisions.jsonl) and on the real seed dumps."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.errors import UserError
from beam_jobs.launcher import run
from beam_jobs.options import DigestflowOptions, semantic_config
from beam_jobs.query.catalog import table_source
from beam_jobs.store import versions
from bench import semantic as bench_semantic
from transforms.dedup.clusters import SEMANTIC
from transforms.enrich.semantic.evidence import (
    blocking_keys,
    evidence,
    paper_names,
    paper_view,
    title_runs,
)
from transforms.enrich.semantic.merges import MergeClusterSummaries, RevisionMerges
from transforms.enrich.semantic.names import coined_names, is_coined
from transforms.enrich.semantic.rule import (
    DEFAULT_THRESHOLD,
    Candidate,
    Merge,
    SemanticConfig,
    bucket_edges,
    combine_summaries,
    cosine,
    merge_group,
    merged_row,
)
from transforms.enrich.semantic.vectors import VectorLSH, vector_keys

REVISIONS = Path(__file__).resolve().parents[1] / "data" / "revisions.jsonl"
HEADER = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nbyAK and the research community\n\n"


# ------------------------------------------------------------------------------ pure rule


@pytest.mark.parametrize(
    "token, coined",
    [
        ("FlowPrune", True),
        ("UPGD", True),
        ("QM9", True),
        ("rMD17", True),
        ("GPT-4", True),
        ("LDM3D-VR", True),
        ("Training-Free", False),
        ("Text-to-3D", False),
        ("3D", False),
        ("The", False),
        ("PC", False),
        ("128", False),
    ],
)
def test_is_coined(token: str, coined: bool) -> None:
    assert is_coined(token) is coined


def test_coined_names_title_terms_and_repeated_terms() -> None:
    names = coined_names(
        "FlowPrune: Token Pruning",
        "We propose FlowPrune. On ImageNet it helps; FlowPrune is fast. CLIP and CLIP again.",
    )
    assert names == {"flowprune", "clip"}  # ImageNet, used once, is mentioned, not named
    keys = paper_names("FlowPrune: Token Pruning", "We propose FlowPrune. FlowPrune is fast.")
    assert "flowprune" in keys and len(keys) > 1  # plus hashed title runs and the lead


ABSTRACT = (
    "Sparse attention cuts the cost of long-context inference in transformer language models. "
    "We route each query to a few key blocks chosen by a learned scorer and train it jointly."
)
V2_ABSTRACT = (
    "Sparse attention cuts the cost of long-context inference in transformer language models. "
    "Our learned block scorer routes every query to few key blocks; trained jointly, it keeps "
    "accuracy on long-context retrieval while halving latency. Code: https://github.com/a/b"
)


def test_title_runs_prefixes_suffixes_and_the_whole_title() -> None:
    runs = title_runs(tuple(["a", "b", "c", "d", "e"]))
    assert tuple(["a", "b", "c", "d", "e"]) in runs
    assert {tuple(["a", "b", "c", "d"]), tuple(["b", "c", "d", "e"])} <= runs
    assert not any(len(r) < 4 for r in runs)


@pytest.mark.parametrize(
    "v1, v2",
    [
        (
            "Learned Block Routing for Sparse Attention",
            "Learned Block Routing for Sparse Attention",
        ),
        (
            "Learned Block Routing for Sparse Attention",
            "Learned Block Routing for Sparse Attention: The Role of Scorers and Budgets",
        ),
        (
            "Learned Block Routing for Sparse Attention",
            "Rethinking Learned Block Routing for Sparse Attention",
        ),
        (
            "Learned Block Routing for Sparse Attention",
            "Does Learned Block Routing for Sparse Attention Scale? Evidence from Five Models",
        ),
    ],
)
def test_a_title_inside_another_is_evidence_and_a_shared_key(v1: str, v2: str) -> None:
    a, b = paper_view(v1, ABSTRACT), paper_view(v2, V2_ABSTRACT)
    assert "title" in evidence(a, b)
    assert blocking_keys(v1, ABSTRACT) & blocking_keys(v2, V2_ABSTRACT)


def test_evidence_kinds() -> None:
    a = paper_view("Learned Block Routing for Sparse Attention", ABSTRACT)
    b = paper_view("Cheaper Long Contexts with Routed Attention", V2_ABSTRACT)
    assert evidence(a, b) == {"lead", "words"}  # same first sentence, most content words
    c = paper_view("Some Other Title About Graphs", "Graphs are everywhere. https://github.com/a/b")
    d = paper_view("A Fourth Title On Proteins", "See https://github.com/A/b.git for the code.")
    assert "link" in evidence(c, d)  # one repository, however it is written
    e = paper_view("GraphMix: Mixing Nodes", "GraphMix mixes nodes.")
    f = paper_view("Mixing Edges Too", "We extend GraphMix to edges. GraphMix is simple.")
    assert "name" in evidence(e, f)
    # three shared tokens are not a title inside another: "Sparse Attention Models" is too short
    g = paper_view("Sparse Attention Models", "Unrelated text about sparse attention in models.")
    assert "title" not in evidence(a, g)
    cited = paper_view("Other", "We build on https://arxiv.org/abs/2401.00001 and more.")
    citing = paper_view("Another", "As in https://arxiv.org/abs/2401.00001, we do more.")
    assert "link" not in evidence(cited, citing)  # an arXiv citation is not a code link


@pytest.mark.parametrize(
    "similarity, found, tier",
    [
        (0.95, frozenset(), "cosine"),
        (0.90, frozenset(), "cosine"),
        (0.89, frozenset(), None),
        (0.87, frozenset({"title"}), "title"),
        (0.85, frozenset({"title"}), None),
        (0.81, frozenset({"words"}), "words"),
        (0.79, frozenset({"words", "title", "name"}), None),
        (0.86, frozenset({"name"}), "named"),
        (0.86, frozenset({"lead"}), "named"),
        (0.82, frozenset({"link"}), None),
    ],
)
def test_tiers(similarity: float, found: frozenset[str], tier: str | None) -> None:
    assert SemanticConfig().tier(similarity, found) == tier


def candidate(cluster_id: str, vector, names=("x",), rank=None, view=None) -> Candidate:
    vector = np.asarray(vector, dtype=np.float32)
    return Candidate(cluster_id, rank or (cluster_id,), frozenset(names), vector, view)


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def angle(degrees: float) -> np.ndarray:
    return unit(np.cos(np.radians(degrees)), np.sin(np.radians(degrees)))


def test_cosine() -> None:
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([2, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([0, 0], [1, 0]) == 0.0


def test_bucket_edges_apply_the_tiers() -> None:
    a = candidate("a", unit(1, 0))
    b = candidate("b", unit(1, 0.1))  # cosine 0.995: the cosine tier
    c = candidate("c", unit(1, 1))  # cosine 0.71 to a
    v1 = paper_view("Learned Block Routing for Sparse Attention", ABSTRACT)
    v2 = paper_view("Learned Block Routing for Sparse Attention: Budgets", V2_ABSTRACT)
    d = candidate("d", angle(0), view=v1)
    e = candidate("e", angle(30), view=v2)  # cosine 0.866, title inside: the title tier
    f = candidate("f", angle(-30))  # as close to d, without evidence
    config = SemanticConfig(threshold=0.9)
    edges = bucket_edges([c, b, a], config)
    assert [(x, y, t) for x, y, t, _ in edges] == [("a", "b", "cosine")]
    assert edges[0][3] == pytest.approx(cosine(a.embedding, b.embedding))
    assert [(x, y, t) for x, y, t, _ in bucket_edges([f, e, d], config)] == [("d", "e", "title")]


def test_merge_group_splits_chains_and_follows_the_policy_rank() -> None:
    # b ~ a and b ~ c, but a and c are too far apart: a chain a - b - c
    a = candidate("a", angle(0), rank=(2,))
    b = candidate("b", angle(20), rank=(1,))  # first by policy: the merged canonical
    c = candidate("c", angle(40), rank=(3,))  # cosine 0.94 to b, 0.77 to a
    merges = merge_group([c, a, b], SemanticConfig(threshold=0.9))
    assert {(m.cluster_id, m.into) for m in merges} == {("a", "b"), ("c", "b")}
    # with a as the canonical, c is too far from it and stays alone
    a_first = candidate("a", angle(0), rank=(0,))
    merges = merge_group([c, a_first, b], SemanticConfig(threshold=0.9))
    assert {(m.cluster_id, m.into) for m in merges} == {("b", "a")}
    assert (
        merge_group([b, c, a_first], SemanticConfig(threshold=0.9)) == merges
    )  # order does not matter


def test_merged_row_moves_the_former_canonical_and_keeps_duplicate_links() -> None:
    merge = Merge("old", "new", 0.87)
    canonical = {"cluster_id": "old", "is_canonical": True, "duplicate_of": None}
    canonical |= {"similarity": None, "dup_kind": None}
    copy = {"cluster_id": "old", "is_canonical": False, "duplicate_of": "old"}
    copy |= {"similarity": 1.0, "dup_kind": "exact"}
    assert merged_row(canonical, merge) == {
        "cluster_id": "new",
        "is_canonical": False,
        "duplicate_of": "new",
        "similarity": 0.87,
        "dup_kind": SEMANTIC,
    }
    assert merged_row(copy, merge) == {**copy, "cluster_id": "new"}


def test_combine_summaries() -> None:
    day = dt.date(2024, 3, 1)
    rows = [
        {"size": 3, "distinct_texts": 2, "first_digest_date": day, "last_digest_date": day},
        {
            "size": 1,
            "distinct_texts": 1,
            "first_digest_date": None,
            "last_digest_date": dt.date(2024, 5, 1),
        },
    ]
    assert combine_summaries(rows) == {
        "size": 4,
        "distinct_texts": 3,
        "first_digest_date": day,
        "last_digest_date": dt.date(2024, 5, 1),
    }


@pytest.mark.parametrize("threshold", [0.0, -1.0, 1.5])
def test_config_refuses_bad_thresholds(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        SemanticConfig(threshold=threshold)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], DEFAULT_THRESHOLD),
        (["--semantic_threshold=0.9"], 0.9),
        (["--semantic_threshold=off"], None),
        (["--semantic_threshold=0"], None),
        (["--semantic_threshold=-1"], None),
        (["--no_embeddings"], None),
    ],
)
def test_semantic_threshold_option(flags: list[str], expected: float | None) -> None:
    options = DigestflowOptions(flags)
    config = semantic_config(options)
    assert (config.threshold if config else None) == expected


def test_semantic_threshold_above_one_is_a_user_error() -> None:
    with pytest.raises(UserError, match="semantic_threshold"):
        semantic_config(DigestflowOptions(["--semantic_threshold=1.2"]))


# ------------------------------------------------------------------------ Beam composites


def test_revision_merges_composite() -> None:
    members = [
        candidate("a", unit(1, 0), names=("alpha",), rank=(0,)),
        candidate("b", unit(1, 0.2), names=("alpha",), rank=(1,)),
        candidate("c", unit(0, 1), names=("alpha",), rank=(2,)),  # shares the name, far
        candidate("d", unit(1, 0.1), names=("delta",), rank=(3,)),  # close, no shared name
    ]
    # a bucket over the cap is skipped: four near-identical papers all naming "common"
    common = [candidate(f"z{i}", unit(0, 0, 1), names=("common",)) for i in range(4)]
    config = SemanticConfig(threshold=0.9, max_bucket=3)
    with TestPipeline() as p:
        merges = (
            p
            | beam.Create(members + common)
            | RevisionMerges(config)
            | beam.MapTuple(lambda old, m: (old, m.into, round(m.similarity, 4)))
        )
        expected = round(cosine(members[0].embedding, members[1].embedding), 4)
        assert_that(merges, equal_to([("b", "a", expected)]))


def test_revision_merges_of_each_kind_match_the_rule_and_never_join_distinct_papers() -> None:
    """The Beam stage on the hand-written revisions of each kind and the distinct near-miss
    papers (real model): it merges exactly the v1/v2 pairs that share a blocking key and pass
    a tier, and no two distinct papers."""
    papers = bench_semantic.revision_papers(bench_semantic.REVISIONS_BY_KIND)
    vectors = bench_semantic.embed(papers)
    ids = [f"{p.key}/{i}" for i, p in enumerate(papers)]
    config = SemanticConfig(vectors=VectorLSH())
    banded = vector_keys(vectors, config.vectors)
    members = [
        Candidate(
            ids[i],
            (i,),
            blocking_keys(p.title, p.abstract) | banded[i],
            vectors[i],
            paper_view(p.title, p.abstract),
        )
        for i, p in enumerate(papers)
    ]
    expected = set()
    for pair in bench_semantic.rule_pairs(papers, vectors, config):
        if pair["tier"] is not None and pair["meets"]:
            assert pair["same"], pair["titles"]  # no tier accepts two distinct papers
            a, b = pair["index"]
            expected.add((ids[max(a, b)], ids[min(a, b)]))
    kinds = Counter(papers[int(i.split("/")[1])].kind for _, i in expected)
    assert kinds["reworded_abstract"] == 12 and kinds["extended_title"] >= 11
    # what the vector keys add: retitled revisions that share no name or title run
    assert kinds["reworded_title"] >= 11
    with TestPipeline() as p:
        merges = (
            p
            | beam.Create(members)
            | RevisionMerges(config)
            | beam.MapTuple(lambda old, m: (old, m.into))
        )
        assert_that(merges, equal_to(sorted(expected)))


def test_merge_cluster_summaries_composite() -> None:
    day = dt.date(2024, 3, 1)

    def summary(cluster_id: str, size: int, date: dt.date) -> dict:
        return {
            "cluster_id": cluster_id,
            "canonical_record_id": cluster_id,
            "size": size,
            "distinct_texts": 1,
            "first_digest_date": date,
            "last_digest_date": date,
        }

    clusters = [summary("a", 2, day), summary("b", 3, day.replace(day=9)), summary("c", 1, day)]
    with TestPipeline() as p:
        merged = (
            p | "Clusters" >> beam.Create(clusters),
            p | "Merges" >> beam.Create([("b", Merge("b", "a", 0.9))]),
        ) | MergeClusterSummaries()
        expected = summary("a", 5, day) | {
            "distinct_texts": 2,
            "last_digest_date": day.replace(day=9),
        }
        assert_that(merged, equal_to([expected, summary("c", 1, day)]))


# ------------------------------------------------------------------- the invented revisions


def revision_rows() -> list[dict]:
    return bench_semantic.load_revisions(REVISIONS)


def expected_merges(rows: list[dict]) -> set[str]:
    """Papers whose v2 the rule merges: the versions share a blocking key, of their texts or
    of their vectors (so they meet in a bucket), and a tier of the default rule accepts them
    (cosine of the embedded texts)."""
    vectors = bench_semantic.embed(bench_semantic.revision_papers(REVISIONS))
    by_paper: dict[str, dict[int, tuple[dict, np.ndarray]]] = {}
    for row, vector in zip(rows, vectors, strict=True):
        by_paper.setdefault(row["paper"], {})[row["version"]] = (row, vector)
    config = SemanticConfig()
    merged = set()
    for paper, by_version in by_paper.items():
        if 2 not in by_version:
            continue
        (a, va), (b, vb) = by_version[1], by_version[2]
        keys_a, keys_b = vector_keys([va, vb], config.vectors)
        keys_a |= paper_names(a["title"], a["abstract"])
        if not keys_a & (keys_b | paper_names(b["title"], b["abstract"])):
            continue
        found = evidence(
            paper_view(a["title"], a["abstract"]), paper_view(b["title"], b["abstract"])
        )
        if config.tier(cosine(va, vb), found) is not None:
            merged.add(paper)
    return merged


def test_revisions_data_is_what_minhash_misses() -> None:
    rows = revision_rows()
    papers = bench_semantic.revision_papers(REVISIONS)
    pairs = [(a, b) for a in papers for b in papers if a.key == b.key and a.title < b.title]
    pairs += [(a, b) for a in papers for b in papers if a.key == b.key and a.title == b.title]
    assert len({p.key for p in papers if sum(q.key == p.key for q in papers) == 2}) >= 10
    for a, b in pairs:
        if a is not b:
            assert bench_semantic.word_jaccard(a, b) < 0.2, a.key  # far below --threshold 0.8
    assert len(expected_merges(rows)) >= 10


def write_dump(path: Path, day: dt.date, papers: list[dict]) -> None:
    body = "".join(f"{p['title']}\n\n{p['abstract']}\n\n" for p in papers)
    path.write_text(HEADER + day.strftime("%b %d").replace(" 0", " ") + "\n\n" + body)


@pytest.fixture(scope="module")
def revision_dumps(tmp_path_factory) -> Path:
    """v1 of every paper (and the same-topic distinct papers) on Mar 13, v2s on May 2, and
    exact copies of two v2s on May 3 (duplicates of a cluster that gets merged)."""
    rows = revision_rows()
    out = tmp_path_factory.mktemp("revision_dumps")
    first = [r for r in rows if r["version"] == 1]
    second = [r for r in rows if r["version"] == 2]
    write_dump(out / "digest_2024-03-13.txt", dt.date(2024, 3, 13), first)
    write_dump(out / "digest_2024-05-02.txt", dt.date(2024, 5, 2), second)
    write_dump(out / "digest_2024-05-03.txt", dt.date(2024, 5, 3), second[:2])
    return out


def read_table(output: Path, table: str, columns: str = "*") -> list[dict]:
    source = table_source(versions.current_root(str(output)), table)  # live rows
    relation = duckdb.sql(f"SELECT {columns} FROM {source}")
    names = relation.columns
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def run_once(dumps: list[str], output: Path, *flags: str) -> dict:
    argv = [f"--input={d}" for d in dumps] + [f"--output={output}", *flags]
    summary = run(argv)
    assert summary is not None
    return summary


@pytest.fixture(scope="module")
def revisions_run(revision_dumps: Path, tmp_path_factory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("revisions_run") / "out"
    return output, run_once([f"{revision_dumps}/*.txt"], output)


def assignment(output: Path) -> set[tuple]:
    return {
        (
            r["record_id"],
            r["cluster_id"],
            r["is_canonical"],
            r["duplicate_of"],
            r["dup_kind"],
            None if r["similarity"] is None else round(r["similarity"], 5),
        )
        for r in read_table(output, "records")
    }


def check_clusters_table(output: Path) -> None:
    records = read_table(output, "records")
    clusters = {c["cluster_id"]: c for c in read_table(output, "clusters")}
    by_cluster: dict[str, list[dict]] = {}
    for r in records:
        by_cluster.setdefault(r["cluster_id"], []).append(r)
    assert set(clusters) == set(by_cluster)
    for cluster_id, members in by_cluster.items():
        summary = clusters[cluster_id]
        dates = [m["digest_date"] for m in members if m["digest_date"] is not None]
        assert [m["record_id"] for m in members if m["is_canonical"]] == [cluster_id]
        assert summary["size"] == len(members)
        assert summary["distinct_texts"] == len({m["content_hash"] for m in members})
        assert summary["first_digest_date"] == (min(dates) if dates else None)
        assert summary["last_digest_date"] == (max(dates) if dates else None)


def test_pipeline_merges_revisions_into_one_cluster(revisions_run) -> None:
    output, summary = revisions_run
    rows = revision_rows()
    merged = expected_merges(rows)
    records = read_table(output, "records")
    key = {(r["title"], r["abstract"]): (r["paper"], r["version"]) for r in rows}
    by_version: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        by_version.setdefault(key[(record["title"], record["abstract"])], []).append(record)

    vectors = bench_semantic.embed(bench_semantic.revision_papers(REVISIONS))
    vector = {(r["paper"], r["version"]): v for r, v in zip(rows, vectors, strict=True)}
    for paper in {r["paper"] for r in rows}:
        (first,) = by_version[(paper, 1)]
        assert first["is_canonical"], paper  # v1 is the earliest: the merged canonical
        for second in by_version.get((paper, 2), []):
            if paper not in merged:
                assert second["cluster_id"] != first["cluster_id"], paper
                continue
            assert second["cluster_id"] == first["cluster_id"], paper
            assert second["embedding"] == first["embedding"]  # the cluster's vector
            if second["dup_kind"] == "exact":  # a copy of v2 keeps pointing at v2
                assert second["duplicate_of"] != first["record_id"]
                continue
            assert second["dup_kind"] == SEMANTIC
            assert second["duplicate_of"] == first["record_id"]
            expected = cosine(vector[(paper, 1)], vector[(paper, 2)])
            assert second["similarity"] == pytest.approx(expected, abs=1e-3)
            assert second["similarity"] >= SemanticConfig().lowest_bar
    semantic_rows = [r for r in records if r["dup_kind"] == SEMANTIC]
    assert len(semantic_rows) == len(merged) == summary["semantic_merges"]
    # nothing lost: every parsed record enriched and written once, clusters table consistent
    assert summary["records_parsed"] == len(records) == summary["counters"]["rows_enriched"]
    assert summary["every_record_written_once"]
    assert summary["clusters"] == len(read_table(output, "clusters"))
    check_clusters_table(output)


def test_pipeline_merges_are_deterministic(revisions_run, revision_dumps, tmp_path) -> None:
    output, _ = revisions_run
    again = tmp_path / "again"
    run_once([f"{revision_dumps}/*.txt"], again)
    assert assignment(again) == assignment(output)


# -------------------------------------------------------------------- the real seed dumps


@pytest.fixture(scope="module")
def seeds_run(seeds_dir: Path, revision_dumps: Path, tmp_path_factory) -> tuple[Path, dict]:
    """One pipeline run over the seed dumps plus the revision dumps (~1-2 min: embeddings)."""
    output = tmp_path_factory.mktemp("seeds_run") / "out"
    return output, run_once([f"{seeds_dir}/*.txt", f"{revision_dumps}/*.txt"], output)


def test_seed_papers_are_never_merged_with_distinct_ones(seeds_run) -> None:
    output, summary = seeds_run
    records = {r["record_id"]: r for r in read_table(output, "records")}
    paper_of = {(r["title"], r["abstract"]): r["paper"] for r in revision_rows()}
    merged_pairs = []
    for r in records.values():
        if r["dup_kind"] != SEMANTIC:
            continue
        canonical = records[r["duplicate_of"]]
        pair = frozenset({r["title"], canonical["title"]})
        same_revision = paper_of.get((r["title"], r["abstract"])) == paper_of.get(
            (canonical["title"], canonical["abstract"]), "-"
        )
        assert same_revision or pair in bench_semantic.KNOWN_SEED_REVISIONS, sorted(pair)
        merged_pairs.append(pair)
    assert len(merged_pairs) >= len(expected_merges(revision_rows()))
    assert any(pair in bench_semantic.KNOWN_SEED_REVISIONS for pair in merged_pairs)
    assert summary["records_parsed"] == len(records) == summary["counters"]["rows_enriched"]
    check_clusters_table(output)


def test_records_of_revisions_file_are_valid_json() -> None:
    for line in REVISIONS.read_text().splitlines():
        row = json.loads(line)
        assert {"paper", "version", "title", "abstract"} <= row.keys()


def test_an_update_merges_revisions_like_one_full_run(
    revision_dumps: Path, revisions_run, tmp_path: Path
) -> None:
    """v1s first, then the day of the v2s and the day of their copies as updates: the
    update must bring in every v1 whose name a v2 shares, and merge as the full run did."""
    output, _ = revisions_run
    incremental = tmp_path / "incremental"
    run_once([str(revision_dumps / "digest_2024-03-13.txt")], incremental, "--quiet")
    parts = []
    for day in ("digest_2024-05-02.txt", "digest_2024-05-03.txt"):
        summary = run_once([str(revision_dumps / day)], incremental, "--incremental", "--quiet")
        assert summary["every_record_written_once"] is True
        parts.append(summary["update_part"])
    # the v2s bring the v1s they revise (by name); their copies join directly
    assert parts[0]["clusters"] > 0
    assert parts[1]["joined_copies"] == 2 and parts[1]["clusters"] == 0
    # equal, up to the model's batch numerics in the cosines (vectors embedded in other
    # batches than the full run's differ by ~1e-6)
    ours, full = sorted(assignment(incremental)), sorted(assignment(output))
    assert [row[:5] for row in ours] == [row[:5] for row in full]
    for a, b in zip(ours, full, strict=True):
        assert (a[5] is None) == (b[5] is None) and abs((a[5] or 0) - (b[5] or 0)) < 1e-4
    check_clusters_table(incremental)
    names = read_table(incremental, "paper_names")
    assert len(names) == len(read_table(incremental, "records"))


@pytest.mark.parametrize("vector_bands", [0, VectorLSH().bands])
def test_an_update_merges_revisions_of_every_kind_like_one_full_run(
    tmp_path: Path, vector_bands: int
) -> None:
    """The revisions of each kind (and the distinct near-miss papers) as two days: the v2 day
    as an update ends with the clusters, canonicals and merges of one full run of both, with
    text keys only (the default) and with vector keys."""
    rows = bench_semantic.load_revisions(bench_semantic.REVISIONS_BY_KIND)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    write_dump(
        dumps / "digest_2024-03-13.txt",
        dt.date(2024, 3, 13),
        [r for r in rows if r["version"] == 1],
    )
    write_dump(
        dumps / "digest_2024-05-02.txt", dt.date(2024, 5, 2), [r for r in rows if r["version"] == 2]
    )
    flags = ("--quiet", f"--semantic_vector_bands={vector_bands}")
    full, incremental = tmp_path / "full", tmp_path / "incremental"
    run_once([f"{dumps}/*.txt"], full, *flags)
    base = run_once([str(dumps / "digest_2024-03-13.txt")], incremental, *flags)
    summary = run_once([str(dumps / "digest_2024-05-02.txt")], incremental, "--incremental", *flags)
    assert summary["every_record_written_once"] is True
    ours, theirs = sorted(assignment(incremental)), sorted(assignment(full))
    assert [row[:5] for row in ours] == [row[:5] for row in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert (a[5] is None) == (b[5] is None) and abs((a[5] or 0) - (b[5] or 0)) < 1e-4
    merged = [row for row in ours if row[4] == SEMANTIC]
    check_clusters_table(incremental)
    planned = summary["update_part"]["planned_embeddings"]
    if not vector_bands:
        assert len(merged) >= 24  # the reworded abstracts and extended titles at least
        assert planned == 0
        return
    # the reworded titles too: the vector keys find them
    assert len(merged) >= 35
    by_kind = Counter(
        r["kind"]
        for r in rows
        if r["version"] == 2
        and (r["title"], r["abstract"])
        in {
            (m["title"], m["abstract"])
            for m in read_table(incremental, "records")
            if m["dup_kind"] == SEMANTIC
        }
    )
    assert by_kind["reworded_title"] >= 11, by_kind
    # the plan embedded the day's texts for their band keys; the job reused those vectors,
    # and no text was embedded twice
    assert planned > 0
    assert summary["counters"].get("embeddings_planned", 0) > 0
    keys = read_table(incremental, "embeddings", "count(*) AS n, count(DISTINCT text_key) AS d")
    assert keys[0]["n"] == keys[0]["d"] == base["embedded_texts"] + summary["embedded_texts"]
