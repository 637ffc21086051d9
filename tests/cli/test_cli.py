"""The console script as a user runs it: clear errors, exit codes, readable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from beam_jobs.cli.main import main
from transforms.schema import TABLES, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_matching_input_is_one_clear_error(tmp_path: Path) -> None:
    done = _cli("run", f"--input={tmp_path}/nothing-*.txt", f"--output={tmp_path}/out")
    assert done.returncode == 2
    assert "no file matches" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_option_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    done = _cli("run", f"--input={tmp_path}/*.txt", "--ouptut=x")
    assert done.returncode == 2
    assert "did you mean --output" in done.stderr


def test_missing_output_and_unwritable_output(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert main(["run", f"--input={tmp_path}/a.txt"]) == 2
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", f"--input={tmp_path}/a.txt", f"--output={blocker}/out"]) == 2


def test_generate_run_and_query(tmp_path: Path, capsys) -> None:
    dumps, out = tmp_path / "dumps", tmp_path / "out"
    assert main(["generate", "--out", str(dumps), "--records", "300", "--seed", "1"]) == 0
    assert main(["run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings"]) == 0
    capsys.readouterr()
    assert main(["sql", str(out), "SELECT count(*) AS n FROM records", "--format", "json"]) == 0
    n = json.loads(capsys.readouterr().out)[0]["n"]
    assert 280 <= n <= 300
    assert main(["sql", str(out), "SELECT count(*) AS n FROM papers", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "n"
    assert main(["sql", str(out), "SELECT nonsense FROM records"]) == 2


def test_readme_documents_the_schema() -> None:
    text = README.read_text()
    for schema in TABLES.values():
        assert markdown_table(schema) in text
