"""Hostile inputs, as a user meets them through the CLI: a directory as ``--input`` is one
``digestflow: error:`` line (exit 2, nothing written); a FIFO among the inputs is never
opened (a ``not_a_file`` dead letter, no hang); lines that are not UTF-8 are counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_jobs.cli.main import main
from beam_jobs.synthetic.generator import GeneratorConfig, generate

TIMEOUT = 180  # a regression (open() on a FIFO blocks forever) fails instead of hanging
ABSTRACT = "We present a sparse attention model for long graph training data. " * 6


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    out = tmp_path / "dumps"
    out.mkdir()
    generate(out, GeneratorConfig(records=20, seed=3, records_per_file=10))
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def current(output: Path) -> Path:
    """The published version's directory (the manifest names it)."""
    return output / json.loads((output / "manifest.json").read_text())["root"]


def table(output: Path, name: str, columns: list[str] | None = None) -> list[dict]:
    return pq.read_table(current(output) / name, columns=columns).to_pylist()


def summary(output: Path) -> dict:
    return json.loads((current(output) / "run_summary.json").read_text())


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_directory_as_input_is_one_error(dumps: Path, tmp_path: Path, capsys, slash) -> None:
    out = tmp_path / "out"
    argv = ["run", f"--input={dumps}{slash}", f"--output={out}", "--no_embeddings", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"digestflow: error: --input {dumps}{slash} is a directory; did you mean '{dumps}/*.txt'?"
    ]
    assert not out.exists()


def test_a_fifo_among_the_inputs_is_a_dead_letter_not_a_hang(dumps: Path, tmp_path: Path) -> None:
    fifo = dumps / "pipe.txt"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    done = run_cli("run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet")
    assert done.returncode == 0, done.stderr
    dead = [d for d in table(out, "dead_letter") if d["source_file"] == str(fifo)]
    assert [(d["reason"], d["record_index"]) for d in dead] == [("not_a_file", None)]
    assert "FIFO" in dead[0]["excerpt"]
    (row,) = [r for r in table(out, "inputs") if r["source_file"] == str(fifo)]
    assert (row["sha256"], row["size_bytes"], row["records"], row["dead_letters"]) == (
        None,
        0,
        0,
        1,
    )
    assert summary(out)["counters"]["dead_letters.not_a_file"] == 1


def test_an_update_with_a_fifo_does_not_hang(dumps: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli("run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet")
    assert done.returncode == 0, done.stderr
    (tmp_path / "later").mkdir()
    os.mkfifo(tmp_path / "later" / "pipe.txt")
    argv = [f"--input={tmp_path}/later/*.txt", f"--output={out}", "--no_embeddings", "--quiet"]
    done = run_cli("run", *argv, "--incremental")
    assert done.returncode == 0, done.stderr
    dead = [d for d in table(out, "dead_letter") if d["reason"] == "not_a_file"]
    assert [d["source_file"] for d in dead] == [str(tmp_path / "later" / "pipe.txt")]


def test_latin1_lines_are_counted_in_the_run_summary(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    title = "Caf\u00e9 Scenes for a Na\u00efve Benchmark".encode("latin-1")
    (dumps / "2024-03-13.txt").write_bytes(title + b"\n" + ABSTRACT.encode() + b"\n")
    out = tmp_path / "out"
    argv = ["run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet"]
    assert main(argv) == 0
    assert summary(out)["counters"]["lines_decoded_with_fallback"] == 1
    (record,) = table(out, "records", ["title"])
    assert record["title"].startswith("Caf\u00e9 Scenes")
