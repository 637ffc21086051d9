"""The pipeline end to end: real Beam (FnApiRunner), real Parquet, checked through DuckDB."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.launcher import run
from beam_jobs.query import catalog
from beam_jobs.store import versions
from beam_jobs.store.tables import table_dir
from beam_jobs.synthetic.generator import read_ground_truth
from transforms.dedup.duplicates import ClusterDuplicates, DedupConfig
from transforms.ingest.parse import file_context, make_record
from transforms.ingest.read import ParseDigests, ReadDigests
from transforms.records import Record, make_record_id

FNAPI = ["--runner=FnApiRunner"]


def _run(inputs: list[str], output: Path, *extra: str, embeddings: bool = False) -> dict:
    """Run the real pipeline; embeddings off unless asked (test_embedding_pipeline has them)."""
    argv = [*(f"--input={i}" for i in inputs), f"--output={output}", *extra]
    if not embeddings:
        argv.append("--no_embeddings")
    summary = run(argv)
    assert summary is not None
    return summary


def _record(source: str, index: int, title: str, abstract: str) -> Record:
    record = make_record(source, index, None, title, abstract)
    assert isinstance(record, Record)
    return record


def test_parse_digests_composite_splits_records_and_dead_letters(tmp_path: Path) -> None:
    abstract = "We study a thing in depth. " * 12
    page = f"SubscribeFirst Title\n{abstract}\nOrphan Title\nSecond Title\n{abstract}\n"
    (tmp_path / "digest_2024-03-01.txt").write_text(page)
    (tmp_path / "empty.txt").write_bytes(b"")
    with TestPipeline(options=PipelineOptions(FNAPI)) as p:
        parsed = p | ReadDigests([str(tmp_path / "*.txt")]) | ParseDigests()
        titles = parsed.records | beam.Map(lambda r: (r.title, r.record_index))
        reasons = parsed.dead_letters | beam.Map(lambda d: (d.reason, d.record_index))
        assert_that(titles, equal_to([("First Title", 0), ("Second Title", 2)]), label="Records")
        assert_that(
            reasons,
            equal_to([("missing_abstract", 1), ("empty_file", None)]),
            label="DeadLetters",
        )


def test_cluster_duplicates_composite_groups_exact_and_near_copies() -> None:
    abstract = " ".join(f"word{i} token{i * 7 % 13} idea{i % 5}" for i in range(60)) + "."
    near = abstract.replace("word7 ", "wrod7 ")
    records = [
        _record("a.txt", 0, "A Paper", abstract),
        _record("b.txt", 0, "A Paper", abstract),  # exact copy
        _record("c.txt", 0, "A Paper", near),  # one typo
        _record("d.txt", 0, "Another Paper", "Completely different words here. " * 10),
    ]
    with TestPipeline(options=PipelineOptions(FNAPI)) as p:
        result = p | beam.Create(records) | ClusterDuplicates(DedupConfig())
        kinds = result.rows | beam.Map(lambda r: (r["source_file"], r["dup_kind"], r["cluster_id"]))
        canonical = make_record_id("a.txt", 0)
        expected = [
            ("a.txt", None, canonical),
            ("b.txt", "exact", canonical),
            ("c.txt", "near", canonical),
            ("d.txt", None, make_record_id("d.txt", 0)),
        ]
        assert_that(kinds, equal_to(expected))


def test_end_to_end_every_slot_lands_once(small_corpus: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    summary = _run([str(small_corpus / "digest_*")], output)
    truth = read_ground_truth(small_corpus)
    expected_slots = {(t["source_file"], t["record_index"]) for t in truth}
    con = catalog.connect(str(output))
    rows = con.execute(
        "SELECT regexp_extract(source_file, '[^/]+$'), record_index FROM records"
    ).fetchall()
    dead = con.execute(
        "SELECT regexp_extract(source_file, '[^/]+$'), record_index, reason FROM dead_letter"
    ).fetchall()
    assert len(rows) == len(set(rows)), "a record was written twice"
    assert {(f, i) for f, i, _ in dead}.isdisjoint(rows)
    assert set(rows) | {(f, i) for f, i, _ in dead} == expected_slots
    malformed = {
        (t["source_file"], t["record_index"]) for t in truth if t["variant"] == "missing_abstract"
    }
    assert {(f, i) for f, i, r in dead if r == "missing_abstract"} == malformed
    assert summary["records_parsed"] == summary["rows_written"] == len(rows)
    assert summary["dead_lettered"] == len(dead)
    assert summary["every_record_written_once"] is True
    written = Path(versions.current_root(str(output))) / "run_summary.json"
    assert json.loads(written.read_text())["rows_written"] == len(rows)

    (bad,) = con.execute(
        "SELECT count(*) FROM (SELECT cluster_id FROM records GROUP BY cluster_id "
        "HAVING count(*) FILTER (WHERE is_canonical) <> 1)"
    ).fetchone()
    assert bad == 0, "every cluster has exactly one canonical"
    (clusters,) = con.execute("SELECT count(*) FROM clusters").fetchone()
    assert clusters == summary["clusters"]
    (exact_split,) = con.execute(
        "SELECT count(*) FROM (SELECT content_hash FROM records GROUP BY content_hash "
        "HAVING count(DISTINCT cluster_id) > 1)"
    ).fetchone()
    assert exact_split == 0, "exact copies always share a cluster"
    # Pairwise: records of different papers never share a cluster.
    paper = {(t["source_file"], t["record_index"]): t["paper_id"] for t in truth}
    members: dict[str, set[str]] = {}
    for cluster_id, f, i in con.execute(
        "SELECT cluster_id, regexp_extract(source_file, '[^/]+$'), record_index FROM records"
    ).fetchall():
        members.setdefault(cluster_id, set()).add(paper[(f, i)])
    assert all(len(papers) == 1 for papers in members.values())


def test_digest_dates_come_from_the_page_or_the_file_name(
    small_corpus: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    _run([str(small_corpus / "digest_*")], output, "--no_near_duplicates")
    mismatched = catalog.query(
        str(output),
        "SELECT count(*) FROM records WHERE digest_date IS NULL OR strftime(digest_date, '%Y-%m-%d') "
        "<> regexp_extract(source_file, '(\\d{4}-\\d{2}-\\d{2})', 1)",
    )[1][0][0]
    assert mismatched == 0


def test_two_runs_give_identical_clusters(small_corpus: Path, tmp_path: Path) -> None:
    sql = (
        "SELECT record_id, cluster_id, is_canonical, duplicate_of, dup_kind FROM records "
        "ORDER BY record_id"
    )
    first, second = tmp_path / "a", tmp_path / "b"
    _run([str(small_corpus / "digest_*")], first)
    _run([str(small_corpus / "digest_*")], second, "--direct_num_workers=2")
    assert catalog.query(str(first), sql) == catalog.query(str(second), sql)


def test_bad_files_become_dead_letters_not_failures(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    abstract = "This abstract is long enough to be an abstract by shape alone. " * 6
    good = f"Get trending papers in your email inbox!\nSubscribeGood Title\n{abstract}\n"
    (inputs / "good.txt").write_text(good)
    (inputs / "good.txt.bz2").write_bytes(bz2.compress(good.encode()))
    (inputs / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    (inputs / "empty.txt").write_bytes(b"")
    broken = gzip.compress((good * 200).encode())
    (inputs / "broken.txt.gz").write_bytes(broken[: len(broken) // 2])
    (inputs / "latin1.txt").write_bytes(good.replace("Good", "Caf\xe9").encode("cp1252"))
    summary = _run([str(inputs / "*")], tmp_path / "out")
    reasons = summary["dead_letters_by_reason"]
    assert reasons.get("binary_file") == 1
    assert reasons.get("empty_file") == 1
    assert reasons.get("read_error") == 1
    titles = {
        row[0] for row in catalog.query(str(tmp_path / "out"), "SELECT title FROM records")[1]
    }
    assert {"Good Title", "Café Title"} <= titles
    assert summary["every_record_written_once"]


def test_seed_dumps_parse_and_cluster_exactly(seeds_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    summary = _run([str(seeds_dir / "*.txt")], output)
    assert summary["records_parsed"] == 823
    assert summary["dead_lettered"] == 0
    con = catalog.connect(str(output))
    assert con.execute("SELECT count(DISTINCT title) FROM records").fetchone()[0] == 723
    # Every exact-title repeat ends in one cluster ...
    split = con.execute(
        "SELECT count(*) FROM (SELECT title FROM records GROUP BY title "
        "HAVING count(DISTINCT cluster_id) > 1)"
    ).fetchone()[0]
    assert split == 0
    # ... and no two distinct papers merge.
    merged = con.execute(
        "SELECT count(*) FROM (SELECT cluster_id FROM records GROUP BY cluster_id "
        "HAVING count(DISTINCT title) > 1)"
    ).fetchone()[0]
    assert merged == 0
    assert con.execute("SELECT count(*) FROM clusters").fetchone()[0] == 723


def test_refuses_to_mix_runs_without_overwrite(small_corpus: Path, tmp_path: Path) -> None:
    from beam_jobs.errors import UserError

    output = tmp_path / "out"
    _run([str(small_corpus / "digest_*")], output, "--no_near_duplicates")
    with pytest.raises(UserError, match="--overwrite"):
        _run([str(small_corpus / "digest_*")], output)
    first = catalog.query(str(output), "SELECT count(*) FROM inputs")[1]
    summary = _run(
        [str(small_corpus / "digest_*.txt")], output, "--overwrite", "--no_near_duplicates"
    )
    files = os.listdir(table_dir(versions.current_root(str(output)), "records"))
    assert files and all(f.endswith(".parquet") for f in files)
    # The replacement is a new version: the old one stays readable (and intact had this
    # run failed) until the manifest switched; then only the new one is seen.
    names = sorted(os.listdir(output))
    assert names[:2] == ["commits", "manifest.json"]
    assert [versions.version_number(n) for n in names[2:]] == [1, 2]
    assert versions.read_manifest(str(output)).version == 2
    (rows,) = catalog.query(str(output), "SELECT count(*) FROM records")[1][0]
    assert rows == summary["rows_written"]
    assert catalog.query(str(output), "SELECT count(*) FROM inputs")[1] != first


def test_year_rule_for_date_lines() -> None:
    assert file_context("/x/digest_2023-05-02.txt").year == 2023
    assert file_context("/x/2021/page.txt", modified_year=2025).year == 2021
    assert file_context("/x/page.txt", modified_year=2025).year == 2025
    assert file_context("/x/digest_2023-05-02.txt", digest_year=2020).year == 2020


def test_publish_makes_a_detached_jobs_output_readable(small_corpus: Path, tmp_path: Path) -> None:
    """A Flex Template job writes its version directory but no manifest (the launcher only
    translates): ``digestflow publish`` completes and publishes it."""
    from beam_jobs.cli.main import main

    output = tmp_path / "out"
    summary = _run([str(small_corpus / "digest_*")], output, "--no_near_duplicates")
    # what a detached job leaves: its v000001 directory, no manifest, no commit record
    (output / "manifest.json").unlink()
    shutil.rmtree(output / "commits")
    (attempt,) = [p for p in output.iterdir() if versions.version_number(p.name) == 1]
    attempt.rename(output / versions.version_name(1))
    with pytest.raises(versions.NotAnOutput):
        catalog.query(str(output), "SELECT 1")
    assert main(["publish", str(output)]) == 0
    (rows,) = catalog.query(str(output), "SELECT count(*) FROM records")[1][0]
    assert rows == summary["rows_written"]
    assert main(["publish", str(output)]) == 2  # already published: a clear refusal
