"""transforms.ingest.read: the Beam adapters, run in a TestPipeline on real files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from transforms.ingest.parse import NOT_A_FILE, READ_ERROR
from transforms.ingest.read import (
    NotARegularFile,
    ParseDigests,
    ReadDigests,
    check_regular_file,
    dump_sha256,
    literal_path,
)
from transforms.metrics import NAMESPACE

TITLE = "Sparse Attention for Long Graphs"
ABSTRACT = "We present a sparse attention model for long graph training data. " * 6


def _saved(path: Path):
    def save(actual: list) -> None:  # assert_that's check: runs once, on every element
        path.write_bytes(pickle.dumps(list(actual)))

    return save


def read_all(patterns: list[str], tmp: Path) -> tuple[list, list, list, dict[str, int]]:
    """Records, dead letters, ``inputs`` rows and our counters of one pipeline run."""
    p = TestPipeline(runner="FnApiRunner")
    parsed = p | ReadDigests(patterns) | ParseDigests()
    outputs = {"records": parsed.records, "dead": parsed.dead_letters, "inputs": parsed.input_files}
    for name, pcoll in outputs.items():
        assert_that(pcoll, _saved(tmp / f"{name}.pickle"), label=f"Save{name}")
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    saved = [pickle.loads((tmp / f"{name}.pickle").read_bytes()) for name in outputs]
    return saved[0], saved[1], saved[2], counters


def test_a_file_gone_before_the_read_is_a_dead_letter_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(f"{TITLE}\n{ABSTRACT}\n")
    gone = tmp_path / "gone.txt"  # checked by the launcher, deleted before the pipeline read
    records, dead, inputs, counters = read_all([str(good), str(gone)], tmp_path)
    assert len(records) == 1
    (letter,) = dead
    assert letter.source_file == str(gone)
    assert letter.reason == READ_ERROR and letter.record_index is None
    assert str(gone) in letter.excerpt and "FileNotFoundError" in letter.excerpt
    rows = {row["source_file"]: row for row in inputs}
    assert rows[str(gone)] == {
        "source_file": str(gone),
        "sha256": None,
        "size_bytes": 0,
        "records": 0,
        "dead_letters": 1,
    }
    assert counters["dead_letters.read_error"] == 1 and counters["files_matched"] == 2


def test_an_escaped_pattern_names_its_file(tmp_path: Path) -> None:
    gone = tmp_path / "day[1]*?.txt"
    _, dead, inputs, _ = read_all(
        [str(tmp_path).replace("[", "[[]") + "/day[[]1][*][?].txt"], tmp_path
    )
    assert [letter.source_file for letter in dead] == [str(gone)]
    assert [row["source_file"] for row in inputs] == [str(gone)]
    assert literal_path("/x/*.txt") == "/x/*.txt"  # a real glob stays itself


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(f"{TITLE}\n{ABSTRACT}\n")
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile, match="a FIFO"):
        check_regular_file(str(fifo))
    with pytest.raises(NotARegularFile, match="a directory"):
        dump_sha256(str(tmp_path))
    with pytest.raises(NotARegularFile, match="a FIFO"):
        dump_sha256(str(fifo))  # an update hashes its inputs first: must not block either
    records, dead, inputs, counters = read_all([str(tmp_path / "*.txt")], tmp_path)
    assert len(records) == 1
    (letter,) = dead
    assert (letter.source_file, letter.reason) == (str(fifo), NOT_A_FILE)
    assert "FIFO" in letter.excerpt
    row = next(r for r in inputs if r["source_file"] == str(fifo))
    assert (row["sha256"], row["size_bytes"], row["dead_letters"]) == (None, 0, 1)
    assert counters["dead_letters.not_a_file"] == 1


def test_fallback_lines_are_counted_in_the_pipeline_metrics(tmp_path: Path) -> None:
    latin = "Caf\u00e9 Scenes for a Na\u00efve Benchmark".encode("latin-1")
    dump = tmp_path / "mixed.txt"
    dump.write_bytes(latin + b"\n" + ABSTRACT.encode() + b"\n" + b"r\xe9sum\xe9 line\n")
    _, _, _, counters = read_all([str(dump)], tmp_path)
    assert counters["lines_decoded_with_fallback"] == 2
