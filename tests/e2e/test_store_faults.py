"""The store under faults: a second writer is refused, a missing or changed file is an error.

Each published version has a commit record (beam_jobs/store/commits.py) listing its files;
readers and updates check them, and two runs aiming at one version cannot both publish.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from beam_jobs.cli.main import main
from beam_jobs.store import commits, versions
from beam_jobs.synthetic.generator import GeneratorConfig, generate


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("store-days")
    generate(root, GeneratorConfig(records=240, seed=5, records_per_file=80))
    found = sorted(root.glob("*.txt"))
    assert len(found) == 3
    return found


def _run(*args: str) -> int:
    return main(["run", *args, "--no_embeddings", "--quiet"])


def _count(output: Path) -> int:
    root = Path(versions.current_root(str(output)))
    files = sorted(str(p) for p in (root / "records").glob("*.parquet"))
    return duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0]


def test_a_commit_record_lists_every_file(days, tmp_path) -> None:
    out = tmp_path / "out"
    assert _run(f"--input={days[0]}", f"--output={out}") == 0
    record = commits.read_commit(str(out), 1)
    listed = commits.files_of(record)
    assert {f.rows for f in listed["records"]} and sum(f.rows for f in listed["records"]) == (
        _count(out)
    )
    for files in listed.values():
        for entry in files:
            assert (out / entry.path).stat().st_size == entry.bytes
    # manifest.json follows the record, for people and older readers
    assert json.loads((out / "manifest.json").read_text())["root"] == record["root"]


def test_the_same_version_cannot_be_committed_twice(tmp_path) -> None:
    commits.create(str(tmp_path), 4, {"version": 4})
    with pytest.raises(commits.ConcurrentCommit, match="another run published version 4"):
        commits.create(str(tmp_path), 4, {"version": 4, "other": True})
    assert commits.read_commit(str(tmp_path), 4) == {"version": 4}
    assert commits.committed_versions(str(tmp_path)) == [4]
    assert not [p for p in (tmp_path / "commits").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_missing_or_changed_file_is_refused(days, tmp_path, capsys, damage) -> None:
    out = tmp_path / "out"
    assert _run(f"--input={days[0]}", f"--output={out}") == 0
    assert _run(f"--input={days[1]}", f"--output={out}", "--incremental") == 0
    victim = sorted(Path(versions.current_root(str(out))).glob("records/*.parquet"))[0]
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:-10])
    capsys.readouterr()
    assert main(["sql", str(out), "SELECT count(*) FROM records"]) == 2
    assert victim.name in capsys.readouterr().err
    # and an update does not carry the loss forward
    assert _run(f"--input={days[2]}", f"--output={out}", "--incremental") == 2
    assert victim.name in capsys.readouterr().err
    assert commits.committed_versions(str(out)) == [1, 2]


def test_two_updates_at_once_never_lose_a_day(days, tmp_path) -> None:
    out = tmp_path / "out"
    assert _run(f"--input={days[0]}", f"--output={out}") == 0
    base = _count(out)
    argv = [sys.executable, "-m", "beam_jobs.cli.main", "run", f"--output={out}"]
    argv += ["--no_embeddings", "--quiet", "--incremental"]
    racers = [
        subprocess.Popen([*argv, f"--input={day}"], stderr=subprocess.PIPE, text=True)
        for day in days[1:]
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in racers]
    won = [day for day, (status, _) in zip(days[1:], results, strict=True) if status == 0]
    for status, stderr in results:
        assert status in (0, 2), stderr
        if status == 2:  # lost the race: refused, nothing of it published
            assert "another run published version" in stderr, stderr
    assert won, "one of them publishes"
    # exactly the days that were published are in the corpus, each once
    day_records = {d: _count_of(d, tmp_path) for d in days[1:]}
    assert _count(out) == base + sum(day_records[d] for d in won)
    # a lost day is simply added again
    for day in days[1:]:
        if day not in won:
            assert _run(f"--input={day}", f"--output={out}", "--incremental") == 0
    assert _count(out) == base + sum(day_records.values())
    numbers = {versions.version_number(p.name) for p in out.iterdir()} - {None}
    assert numbers == set(commits.committed_versions(str(out))[-2:]), "no orphan attempt left"


def _count_of(day: Path, tmp_path: Path) -> int:
    alone = tmp_path / f"alone-{day.stem}"
    assert _run(f"--input={day}", f"--output={alone}") == 0
    return _count(alone)
