"""The store under faults: a second writer is refused, a missing or changed file is an error.

Each published version has a commit record (beam_jobs/store/commits.py) listing its files;
readers and updates check them, and two runs aiming at one version cannot both publish.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from beam_jobs.cli.main import main
from beam_jobs.query import catalog
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
    return catalog.query(str(output), "SELECT count(*) FROM records")[1][0][0]


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
    assert _version_dirs(out) == _kept_dirs(out), "no orphan attempt left"


def _version_dirs(out: Path) -> set[int]:
    return {versions.version_number(p.name) for p in out.iterdir()} - {None}


def _kept_dirs(out: Path) -> set[int]:
    """The kept versions' directories and those holding files they list."""
    kept = commits.committed_versions(str(out))[-2:]
    listed = {
        versions.version_number(entry.path.split("/")[0])
        for version in kept
        for entries in commits.listing(str(out), version).values()
        for entry in entries
    }
    return set(kept) | listed


def _count_of(day: Path, tmp_path: Path) -> int:
    alone = tmp_path / f"alone-{day.stem}"
    assert _run(f"--input={day}", f"--output={alone}") == 0
    return _count(alone)


# ---- history and full verification -------------------------------------------------------


@pytest.fixture(scope="module")
def three_versions(days, tmp_path_factory) -> Path:
    """An output updated twice with the default --keep_versions (2): versions 2 and 3 kept."""
    out = tmp_path_factory.mktemp("history") / "out"
    assert _run(f"--input={days[0]}", f"--output={out}") == 0
    assert _run(f"--input={days[1]}", f"--output={out}", "--incremental") == 0
    assert _run(f"--input={days[2]}", f"--output={out}", "--incremental") == 0
    return out


def _sql_count(out: Path, capsys, *options: str) -> int:
    capsys.readouterr()
    code = main(["sql", str(out), *options, "SELECT count(*) AS n FROM records", "--format", "csv"])
    assert code == 0, capsys.readouterr().err
    return int(capsys.readouterr().out.splitlines()[1])


def test_sql_and_reports_read_a_kept_snapshot(three_versions, days, capsys) -> None:
    out = three_versions
    current = _sql_count(out, capsys)
    earlier = _sql_count(out, capsys, "--snapshot", "2")
    assert earlier == _count_of_days(days[:2], out.parent / "check") < current
    assert _sql_count(out, capsys, "--snapshot", "3") == current
    # the catalog of a snapshot names that version's files, so pasted views keep reading it
    assert main(["catalog", str(out), "--sql", "--snapshot", "2"]) == 0
    script = capsys.readouterr().out
    root = versions.kept_root(str(out), 2)
    assert root in script and versions.kept_root(str(out), 3) not in script
    pasted = duckdb.connect()
    pasted.execute(script)
    assert pasted.execute("SELECT count(*) FROM records").fetchone()[0] == earlier
    assert main(["report", str(out), "overview", "--snapshot", "2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("snapshot", "says"),
    [
        ("1", "version 1 is no longer kept"),
        ("4", "the newest version is 3"),
        ("0", "versions are numbered from 1"),
    ],
)
def test_a_snapshot_that_is_not_kept_is_one_clear_error(three_versions, capsys, snapshot, says):
    capsys.readouterr()
    assert main(["sql", str(three_versions), "--snapshot", snapshot, "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert says in err and "keeps versions 2 and 3" in err
    assert err.count("\n") == 1 and err.startswith("digestflow: error:")


def test_verify_reads_every_byte_and_names_each_changed_file(days, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert _run(f"--input={days[0]}", f"--output={out}") == 0
    assert _run(f"--input={days[1]}", f"--output={out}", "--incremental") == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--format", "csv"]) == 0
    shown = capsys.readouterr()
    assert "every byte matches its SHA-256" in shown.err
    rows = {line.split(",")[0]: line.split(",") for line in shown.out.splitlines()[1:]}
    # rows held by the files (an update's version lists the earlier files, whose rows it
    # replaced are named by its delete files)
    listed = commits.listing(str(out), 2)
    assert int(rows["records"][2]) == sum(e.rows for e in listed["records"]) > _count(out)
    assert "records.deletes" in rows
    # a flipped byte in a data page keeps size and footer: only the checksum finds it
    root = Path(versions.current_root(str(out)))
    victims = sorted(root.glob("records/*.parquet")) + sorted(root.glob("clusters/*.parquet"))
    flipped = bytearray(victims[0].read_bytes())
    flipped[100] ^= 0xFF
    victims[0].write_bytes(bytes(flipped))
    victims[-1].unlink()
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 2 is damaged: 2 of" in err
    assert (
        f"{victims[0].name} has another SHA-256" in err and f"{victims[-1].name} is missing" in err
    )
    # the earlier snapshot is untouched and still verifies
    assert main(["verify", str(out), "--snapshot", "1"]) == 0


def _count_of_days(inputs: list[Path], out: Path) -> int:
    """Records of one full run over ``inputs`` (what a snapshot that ingested them holds)."""
    args = [f"--input={day}" for day in inputs]
    assert _run(*args, f"--output={out}", "--overwrite") == 0
    return _count(out)


# ---- kill -9 at each step of an update -----------------------------------------------------

# Each entry: where the update process SIGKILLs itself (a real kill, in a child process, by
# replacing one function with one that kills), and which version readers must see after it.
# The functions are the update's steps in order: the job, the run summary (the version is
# complete), the commit record's atomic link, the record in place but manifest.json not yet
# rewritten, and the manifest switched but older versions not yet retired.
KILL_POINTS = {
    "during the job": ("transforms.dedup.duplicates", "AssignClustersFn.process", "before", 1),
    "before the commit": ("beam_jobs.launcher", "write_summary", "before", 1),
    "during the commit": ("os", "link", "before", 1),
    "after the commit record": ("beam_jobs.store.commits", "create", "after", 2),
    "before retiring old versions": ("beam_jobs.store.versions", "retire_versions", "before", 2),
}

_KILLER = """
import importlib, os, signal, sys
module_name, attribute, when = sys.argv[1:4]
owner = importlib.import_module(module_name)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)

def killing(*args, **kwargs):
    if when == "after":
        original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(owner, name, killing)
from beam_jobs.cli.main import main
sys.exit(main(sys.argv[4:]))
"""


def _rows(output: Path) -> list[tuple]:
    """What an update must get right, row by row, in a stable order."""
    columns = "record_id, cluster_id, is_canonical, duplicate_of, round(similarity, 6), dup_kind"
    connection = catalog.connect(str(output))
    try:
        return connection.execute(f"SELECT {columns} FROM records ORDER BY record_id").fetchall()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def uninterrupted(days, tmp_path_factory) -> tuple[Path, list[tuple]]:
    """A one-day output (the base every kill starts from) and the rows the second day's
    update gives it when nothing goes wrong."""
    root = tmp_path_factory.mktemp("kill")
    base = root / "base"
    assert _run(f"--input={days[0]}", f"--output={base}") == 0
    done = root / "done"
    shutil.copytree(base, done)
    assert _run(f"--input={days[1]}", f"--output={done}", "--incremental") == 0
    return base, _rows(done)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_an_update_killed_at_any_step_leaves_a_whole_version_and_reruns(
    days, uninterrupted, tmp_path, capsys, point
) -> None:
    base, expected = uninterrupted
    out = tmp_path / "out"
    shutil.copytree(base, out)
    before = _rows(out)
    module, attribute, when, visible = KILL_POINTS[point]
    update = ["run", f"--input={days[1]}", f"--output={out}", "--incremental"]
    killed = subprocess.Popen(
        [sys.executable, "-c", _KILLER, module, attribute, when, *update, "--no_embeddings"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the helpers it forks go with it
    )
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, stderr
    with contextlib.suppress(ProcessLookupError):  # as a machine crash takes them too
        os.killpg(killed.pid, signal.SIGKILL)
    # readers see one whole version: the old one, or the new one once its record exists
    assert _rows(out) == (before if visible == 1 else expected)
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0, capsys.readouterr().err
    # running the update again finishes the day (or finds it ingested) and equals the
    # uninterrupted update; no attempt directory is left behind
    assert _run(f"--input={days[1]}", f"--output={out}", "--incremental") == 0
    assert _rows(out) == expected
    assert _version_dirs(out) == _kept_dirs(out), "no orphan attempt left"


def test_an_output_rebuilt_at_the_same_path_lists_its_own_files(tmp_path) -> None:
    """A reader remembers the files a published version lists; a version written again under
    the same directory name in the same process (a template job's plain ``v000001``) must be
    published with the files it holds, not with the remembered ones."""
    from bench.search import build_output

    out = tmp_path / "out"
    build_output(out, papers=50)
    assert catalog.query(str(out), "SELECT count(*) FROM papers")[1] == [(50,)]
    shutil.rmtree(out)
    build_output(out, papers=20)
    assert catalog.query(str(out), "SELECT count(*) FROM papers")[1] == [(20,)]
