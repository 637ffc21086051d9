"""Daily increments (``--incremental``): N updates equal one full run, nothing is embedded
twice, re-adding a dump changes nothing, and a failed update leaves the old version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_jobs import launcher, summary
from beam_jobs.errors import UserError
from beam_jobs.incremental import background
from beam_jobs.incremental.settings import settings_differences
from beam_jobs.query import catalog
from beam_jobs.store import commits, versions
from beam_jobs.synthetic.generator import GeneratorConfig, generate
from transforms.ingest.read import dump_sha256
from transforms.schema import DEAD_LETTER_SCHEMA, INPUTS_SCHEMA, to_table


def _days(tmp_path: Path, records: int, seed: int) -> list[Path]:
    """Generated dumps, one file per digest day, in date order."""
    source = tmp_path / "generated"
    generate(source, GeneratorConfig(records=records, seed=seed, malformed_rate=0.01))
    return sorted(source.glob("digest_*.txt"))


def _run(inputs: list[Path], output: Path, *flags: str) -> dict:
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    return launcher.run([*argv, "--output", str(output), "--quiet", *flags])


def _table(output: Path, sql: str) -> list[tuple]:
    return catalog.query(str(output), sql)[1]


def _snapshot(output: Path) -> dict[str, list[tuple]]:
    return {
        "records": _table(output, "SELECT * EXCLUDE (embedding) FROM records ORDER BY record_id"),
        "clusters": _table(output, "SELECT * FROM clusters ORDER BY ALL"),
        "dead_letter": _table(output, "SELECT * FROM dead_letter ORDER BY ALL"),
        "inputs": _table(output, "SELECT * FROM inputs ORDER BY ALL"),
        "lsh_bands": _table(output, "SELECT * FROM lsh_bands ORDER BY ALL"),
    }


@pytest.fixture(scope="module")
def daily(tmp_path_factory) -> tuple[list[Path], Path, Path]:
    """Four daily dumps; one output built by a first run and three updates, one by a full run."""
    tmp_path = tmp_path_factory.mktemp("daily")
    days = _days(tmp_path, records=800, seed=21)
    assert len(days) >= 4
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    _run(days[:1], incremental, "--no_embeddings")
    for day in days[1:]:
        summary = _run([day], incremental, "--no_embeddings", "--incremental")
        assert summary["every_record_written_once"] is True
    _run(days, full, "--no_embeddings")
    return days, incremental, full


def test_daily_updates_equal_one_full_run(daily) -> None:
    days, incremental, full = daily
    assert _snapshot(incremental) == _snapshot(full)
    manifest = versions.read_manifest(str(incremental))
    assert manifest.version == len(days)
    # near duplicates across days really were linked by the updates, not only exact copies
    kinds = dict(_table(incremental, "SELECT dup_kind, count(*) FROM records GROUP BY 1"))
    assert kinds.get("near", 0) > 0 and kinds.get("exact", 0) > 0


def _version_dirs(output: Path) -> list[int]:
    numbers = (versions.version_number(p.name) for p in output.iterdir())
    return sorted(n for n in numbers if n is not None)


def _listed_dirs(output: Path, version: int) -> set[int]:
    """The version directories the commit record of ``version`` lists files in."""
    listed = commits.listing(str(output), version)
    return {versions.version_number(e.path.split("/")[0]) for es in listed.values() for e in es}


def test_updates_list_unchanged_files_and_write_only_what_changed(daily) -> None:
    """An update lists the previous version's files as they are (no row is copied), adds
    its own and a delete file per table naming what it replaced; kept versions hold the
    directories their files are in, and no other."""
    days, incremental, _ = daily
    current = len(days)
    kept = _listed_dirs(incremental, current) | _listed_dirs(incremental, current - 1)
    assert _version_dirs(incremental) == sorted(kept | {current - 1, current})
    assert {1, current} <= _listed_dirs(incremental, current)  # the first run's files, still
    listed = commits.listing(str(incremental), current)
    first_run = [e for e in listed["records"] if e.path.startswith("v000001")]
    assert sum(e.rows for e in first_run) > 0
    own = [e for e in listed["records"] if versions.version_number(e.path.split("/")[0]) == current]
    summary = json.loads(
        (Path(versions.current_root(str(incremental))) / "run_summary.json").read_text()
    )
    # this update wrote the rows of its part and its joined copies, nothing more
    written_now = sum(e.rows for e in own)
    assert written_now == summary["records_reclustered"] + summary["records_parsed"]
    assert {"records.deletes", "clusters.deletes", "lsh_bands.deletes"} <= set(listed)


def test_compaction_rewrites_the_live_rows_and_frees_older_directories(
    daily, tmp_path: Path
) -> None:
    from beam_jobs.cli.main import main
    from beam_jobs.store import compaction

    days, source, full = daily
    output = tmp_path / "out"
    shutil.copytree(source, output)
    before = _snapshot(output)
    assert main(["compact", str(output)]) == 0
    version = len(days) + 1
    assert versions.read_manifest(str(output)).version == version
    assert _snapshot(output) == before == _snapshot(full)
    root = versions.current_root(str(output))
    assert not compaction.needs_compaction(root)
    assert _listed_dirs(output, version) == {version}
    assert catalog.verify(str(output)).checked == "sha256"
    # the previous version stays readable (a reader may be scanning it), with its files
    assert catalog.query(str(output), "SELECT count(*) FROM records", snapshot=version - 1)
    assert main(["compact", str(output)]) == 0  # already compact: nothing published
    assert versions.read_manifest(str(output)).version == version
    # once only the compacted version is kept, the older directories go
    versions.retire_versions(str(output), version, keep=1)
    assert _version_dirs(output) == [version]
    assert _snapshot(output) == before
    # and it is updated like any other version
    extra = _days(tmp_path / "more", records=200, seed=5)[:1]
    _run(extra, output, "--no_embeddings", "--incremental")
    assert versions.read_manifest(str(output)).version == version + 1


def test_update_keeps_two_versions_and_counts_every_record(daily) -> None:
    days, incremental, _ = daily
    summary = json.loads(
        (Path(versions.current_root(str(incremental))) / "run_summary.json").read_text()
    )
    (rows,) = _table(incremental, "SELECT count(*) FROM records")[0]
    assert summary["records_parsed"] + summary["records_carried"] == rows
    assert summary["rows_written"] == rows
    (clusters,) = _table(incremental, "SELECT count(*) FROM clusters")[0]
    assert summary["clusters"] == clusters
    # only part of the corpus was clustered again; the rest was carried as it was (its
    # files listed again), and known copies joined their clusters directly
    part = summary["update_part"]
    assert 0 < summary["records_reclustered"] == part["records"] < summary["records_carried"]
    assert summary["records_unchanged"] == summary["records_carried"] - part["records"]
    assert summary["records_joined_known"] == part["joined_copies"] > 0
    plan = json.loads(
        (Path(versions.current_root(str(incremental))) / "update_part.json").read_text()
    )
    assert len(plan["cluster_ids"]) == part["clusters"] and not plan["everything"]


def test_re_adding_a_dump_changes_nothing(daily, tmp_path: Path) -> None:
    days, incremental, _ = daily
    output = tmp_path / "out"
    shutil.copytree(incremental, output)
    before = _snapshot(output)
    summary = _run([days[1]], output, "--no_embeddings", "--incremental")
    assert summary["unchanged"] is True and summary["files_skipped_already_ingested"] == 1
    # the same bytes under another name are recognized too
    renamed = tmp_path / "renamed.txt"
    shutil.copy(days[2], renamed)
    assert _run([renamed], output, "--no_embeddings", "--incremental")["unchanged"] is True
    assert versions.read_manifest(str(output)).version == len(days)
    assert _snapshot(output) == before


def test_a_path_ingested_with_other_bytes_is_refused(daily, tmp_path: Path) -> None:
    """Record ids are path + slot: a dump that changed under its old name would collide."""
    days, _, _ = daily
    live = tmp_path / "live" / "today.txt"
    live.parent.mkdir()
    shutil.copy(days[0], live)
    output = tmp_path / "out"
    _run([live], output, "--no_embeddings")
    shutil.copy(days[1], live)
    with pytest.raises(UserError, match="ingested before with other contents"):
        _run([live], output, "--no_embeddings", "--incremental")
    assert versions.read_manifest(str(output)).version == 1


def test_update_may_change_the_canonical_when_the_policy_says_so(tmp_path: Path) -> None:
    """With --canonical_policy latest a later copy takes over its cluster, exactly as in
    one full run."""
    days = _days(tmp_path, records=600, seed=33)
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    flags = ("--no_embeddings", "--canonical_policy", "latest")
    _run(days[:1], incremental, *flags)
    before = dict(_table(incremental, "SELECT record_id, is_canonical FROM records"))
    _run(days[1:], incremental, *flags, "--incremental")
    _run(days, full, *flags)
    assert _snapshot(incremental) == _snapshot(full)
    after = dict(_table(incremental, "SELECT record_id, is_canonical FROM records"))
    assert any(before[r] and not after[r] for r in before), "no canonical moved to a later copy"


def _update_fails_and_keeps_the_old_version(days, output, monkeypatch, target, name, error):
    """Build a version from two days, make ``target.name`` raise ``error`` during an update
    of the third, and check readers still see the first version whole."""
    _run(days[:2], output, "--no_embeddings")
    before = _snapshot(output)

    def broken(*_args, **_kwargs):
        raise error

    with monkeypatch.context() as patch:
        patch.setattr(target, name, broken)
        with pytest.raises(type(error), match=str(error)):
            _run(days[2:3], output, "--no_embeddings", "--incremental")
    assert versions.read_manifest(str(output)).version == 1
    assert _snapshot(output) == before, "readers must still see the old version"
    return before


def test_failed_update_leaves_the_old_version(daily, tmp_path: Path, monkeypatch) -> None:
    days, _, _ = daily
    output = tmp_path / "out"
    # A crash anywhere before the manifest switch (here: at the switch itself).
    before = _update_fails_and_keeps_the_old_version(
        days, output, monkeypatch, versions, "publish", RuntimeError("killed before the switch")
    )
    attempts = [p for p in output.iterdir() if versions.version_number(p.name) == 2]
    assert attempts, "the half-written version is beside it"

    summary = _run(days[2:3], output, "--no_embeddings", "--incremental")
    assert summary["version"] == 2 and summary["every_record_written_once"] is True
    assert _snapshot(output) != before


def test_update_refuses_what_would_not_equal_a_full_run(daily, tmp_path: Path) -> None:
    days, incremental, _ = daily
    with pytest.raises(UserError, match=r"dedup\.minhash\.threshold: 0\.8 -> 0\.7"):
        _run(days[:1], incremental, "--no_embeddings", "--incremental", "--threshold", "0.7")
    with pytest.raises(UserError, match="embedding"):
        _run(days[:1], incremental, "--incremental")
    with pytest.raises(UserError, match="run once without --incremental"):
        _run(days[:1], tmp_path / "missing", "--no_embeddings", "--incremental")
    with pytest.raises(UserError, match="pick one"):
        _run(days[:1], incremental, "--no_embeddings", "--incremental", "--overwrite")


def test_settings_differences_name_each_changed_setting() -> None:
    stored = {"dedup": {"minhash": {"threshold": 0.8, "num_perm": 128}}, "embedding": None}
    current = {
        "dedup": {"minhash": {"threshold": 0.7, "num_perm": 128}},
        "embedding": {"model": "m"},
    }
    assert settings_differences(stored, current) == [
        "dedup.minhash.threshold: 0.8 -> 0.7",
        "embedding.model: None -> 'm'",
    ]
    assert settings_differences(stored, stored) == []


def test_update_embeds_only_texts_never_seen(tmp_path: Path) -> None:
    """With embeddings: the update sends only new canonical texts to the model, reuses the
    rest, and ends with the clusters, canonicals and vectors of one full run."""
    days = _days(tmp_path, records=240, seed=5)
    first, rest = days[:1], days[1:]
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    base = _run(first, incremental)
    summary = _run(rest, incremental, "--incremental")
    assert summary["embeddings_reused"] > 0
    assert 0 < summary["embedded_texts"] <= summary["records_parsed"]  # new texts only
    assert summary["update_part"]["planned_embeddings"] == 0  # no vector keys by default
    reference = _run(days, full)
    assert summary["embedded_texts"] < reference["embedded_texts"]
    with pytest.raises(UserError, match=r"semantic\.threshold: 0\.9 -> None"):
        _run(rest, incremental, "--incremental", "--semantic_threshold", "off")
    # no text was embedded twice: the table keeps every vector ever computed, once each
    keys = _table(incremental, "SELECT count(*), count(DISTINCT text_key) FROM embeddings")[0]
    assert keys == (base["embedded_texts"] + summary["embedded_texts"],) * 2
    # and it holds the vector of every canonical of the result
    missing = _table(
        incremental,
        "SELECT count(*) FROM records r WHERE is_canonical AND NOT EXISTS "
        "(SELECT 1 FROM embeddings e WHERE e.embedding = r.embedding)",
    )
    assert missing == [(0,)]
    assert _snapshot(incremental) == _snapshot(full)
    sql = "SELECT record_id, embedding FROM records ORDER BY record_id"
    for (rid_a, vec_a), (rid_b, vec_b) in zip(
        _table(incremental, sql), _table(full, sql), strict=True
    ):
        assert rid_a == rid_b
        assert max(abs(a - b) for a, b in zip(vec_a, vec_b, strict=True)) < 1e-5


def test_inputs_table_hashes_the_stored_bytes_like_the_update_does(tmp_path: Path) -> None:
    """The pipeline hashes a dump while parsing it (HashingReader, compressed bytes as
    stored); the update hashes it again on its own: the two must agree, or re-adding a
    dump would not be recognized."""
    source = tmp_path / "dumps"
    generate(source, GeneratorConfig(records=300, seed=8, compress="mixed"))
    output = tmp_path / "out"
    _run(
        sorted(p for p in source.iterdir() if p.name.startswith("digest_")),
        output,
        "--no_embeddings",
    )
    rows = _table(output, "SELECT source_file, sha256, size_bytes FROM inputs ORDER BY 1")
    assert any(path.endswith((".gz", ".bz2")) for path, _, _ in rows)
    for path, digest, size in rows:
        assert digest == dump_sha256(path)
        assert size == Path(path).stat().st_size


def test_seed_dumps_added_day_by_day_equal_one_full_run(seeds_dir: Path, tmp_path: Path) -> None:
    """The real dumps (two layouts, re-scraped papers): four as a base, then the fifth."""
    dumps = sorted(seeds_dir.glob("*.txt"))
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    _run(dumps[:-1], incremental, "--no_embeddings")
    summary = _run(dumps[-1:], incremental, "--no_embeddings", "--incremental")
    _run(dumps, full, "--no_embeddings")
    assert summary["every_record_written_once"] is True
    assert _snapshot(incremental) == _snapshot(full)


def test_a_version_without_the_update_index_is_clustered_again_whole(daily, tmp_path: Path) -> None:
    """An output written before the index existed: the first update clusters all of it
    (and writes the index for the next one)."""
    days, _, full = daily
    output = tmp_path / "out"
    _run(days[:2], output, "--no_embeddings")
    root = Path(versions.current_root(str(output)))
    shutil.rmtree(root / "lsh_bands")
    _edit_commit(output, lambda record: record["files"].pop("lsh_bands"))
    summary = _run(days[2:], output, "--no_embeddings", "--incremental")
    assert summary["update_part"]["everything"] == 1
    assert summary["records_unchanged"] == 0 and summary["records_reclustered"] > 0
    assert _snapshot(output) == _snapshot(full)
    assert (Path(versions.current_root(str(output))) / "lsh_bands").is_dir()


def test_a_failed_background_write_fails_the_update_and_keeps_the_old_version(
    daily, tmp_path: Path, monkeypatch
) -> None:
    days, _, _ = daily
    # the delete files and joined rows are written in a forked process, which inherits
    # the patch
    _update_fails_and_keeps_the_old_version(
        days, tmp_path / "out", monkeypatch, background, "supersede", OSError("disk full")
    )


def test_file_names_with_glob_characters_are_read_as_themselves(tmp_path: Path) -> None:
    """A new dump named ``day[1].txt`` next to an ingested ``day1.txt`` is that file, not a
    pattern matching the other one."""
    days = _days(tmp_path, records=300, seed=41)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    shutil.copy(days[0], dumps / "day1.txt")
    shutil.copy(days[1], dumps / "day[1].txt")
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    _run([dumps / "day1.txt"], incremental, "--no_embeddings")
    summary = launcher.run(
        ["--input", str(dumps / "*.txt"), "--output", str(incremental), "--quiet"]
        + ["--no_embeddings", "--incremental"]
    )
    assert summary["files_skipped_already_ingested"] == 1
    assert summary["every_record_written_once"] is True
    launcher.run(
        ["--input", str(dumps / "*.txt"), "--output", str(full), "--quiet"] + ["--no_embeddings"]
    )
    assert _snapshot(incremental) == _snapshot(full)


def test_an_output_named_by_a_relative_path_reads_every_listed_file(
    tmp_path: Path, monkeypatch
) -> None:
    """A version lists files of earlier versions: resolved through ``out[1]`` relative to
    the working directory and read through its absolute path (as the CLI does), it still
    reads all of them, not only its own directory's."""
    from beam_jobs.cli.main import main

    days = _days(tmp_path, records=300, seed=43)[:3]
    monkeypatch.chdir(tmp_path)
    for index, day in enumerate(days):
        flags = ["--incremental"] if index else []
        assert (
            main(["run", f"--input={day}", "--output=out[1]", "--no_embeddings", "--quiet", *flags])
            == 0
        )
    _run(days, tmp_path / "full", "--no_embeddings")
    assert _snapshot(Path("out[1]")) == _snapshot(tmp_path / "full")


def test_a_dump_unreadable_when_ingested_is_read_once_it_can_be(tmp_path: Path) -> None:
    """The earlier version holds the dump as unreadable (no hash, a read_error dead letter):
    the update reads it and replaces those rows, as one full run would have them."""
    days = _days(tmp_path, records=300, seed=43)
    incremental, full = tmp_path / "incremental", tmp_path / "full"
    _run(days[:1], incremental, "--no_embeddings")
    root = Path(versions.current_root(str(incremental)))
    late = str(days[1])
    unread = {"source_file": late, "sha256": None, "size_bytes": 0, "records": 0}
    pq.write_table(
        to_table([{**unread, "dead_letters": 1}], INPUTS_SCHEMA), root / "inputs" / "late.parquet"
    )
    letter = {"source_file": late, "record_index": None, "reason": "read_error", "excerpt": "x"}
    pq.write_table(to_table([letter], DEAD_LETTER_SCHEMA), root / "dead_letter" / "late.parquet")
    summary = _run(days[1:2], incremental, "--no_embeddings", "--incremental")
    assert summary["records_parsed"] > 0
    _run(days[:2], full, "--no_embeddings")
    assert _snapshot(incremental) == _snapshot(full)


def test_an_output_without_recorded_settings_is_refused(daily, tmp_path: Path) -> None:
    days, _, _ = daily
    output = tmp_path / "out"
    _run(days[:1], output, "--no_embeddings")
    _edit_commit(output, lambda record: record.pop("settings"))
    with pytest.raises(UserError, match="does not record the settings"):
        _run(days[1:2], output, "--no_embeddings", "--incremental")


def test_a_run_whose_counts_do_not_add_up_is_not_published(tmp_path: Path) -> None:
    counts = {
        "every_record_written_once": False,
        "records_parsed": 10,
        "records_carried": 5,
        "rows_written": 14,
    }
    with pytest.raises(summary.IncompleteRun, match="10 records parsed"):
        summary.check_complete(counts, {}, None, str(tmp_path))
    assert json.loads((tmp_path / summary.SUMMARY_FILE).read_text()) == counts
    fine = {**counts, "every_record_written_once": True}
    part = {"everything": 0, "joined_copies": 3, "new_records": 10}
    with pytest.raises(summary.IncompleteRun, match="skipped 2 joined copies, the plan 3"):
        summary.check_complete(
            fine, {"records_joined_known": 2, "records_parsed": 10}, part, str(tmp_path)
        )
    summary.check_complete(
        fine, {"records_joined_known": 3, "records_parsed": 10}, part, str(tmp_path)
    )


def _edit_commit(output: Path, edit) -> None:
    """Change the current commit record in place (what an older digestflow would have left)."""
    path = Path(commits.commit_path(str(output), versions.read_manifest(str(output)).version))
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
