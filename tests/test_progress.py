"""Progress during a run and the summary after it (beam_jobs/progress.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from beam_jobs import progress
from beam_jobs.cli.main import main
from beam_jobs.synthetic.generator import GeneratorConfig, generate, read_ground_truth

SUMMARY = {
    "output": "/data/out",
    "files_matched": 3,
    "records_parsed": 1200,
    "rows_written": 1200,
    "dead_lettered": 7,
    "dead_letters_by_reason": {"missing_abstract": 5, "empty_file": 2},
    "clusters": 900,
    "embedded_texts": 0,
    "embedding_failures": 0,
    "every_record_written_once": True,
    "wall_seconds": 12.5,
}


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_progress_shows_counters_rates_and_stage() -> None:
    values = {"files_matched": 2, "records_parsed": 1500, "digestflow_embed.embedded_texts": 40}
    line = progress.format_progress(values, 12.0, "ParseDigests", 3.0, {"records_parsed": 500.0})
    assert line == (
        "[12 s] files 2 · parsed 1,500 (500/s) · embedded 40 · running ParseDigests (3.0 s)"
    )
    assert progress.format_progress({}, 0.5) == "[0.5 s] starting"


def test_rates_follow_a_moving_counter_and_keep_it_when_it_stops() -> None:
    rates = progress.Rates()
    assert rates.update({"records_parsed": 100}, 1.0) == {}
    assert rates.update({"records_parsed": 300}, 2.0) == {"records_parsed": 200.0}
    assert rates.update({"records_parsed": 500}, 3.0) == {"records_parsed": 200.0}
    assert rates.update({"records_parsed": 500}, 60.0) == {"records_parsed": 200.0}


def test_stage_label_names_the_top_level_steps() -> None:
    names = ["ReadDigests/Match", "ref_PCollection_1", "ParseDigests/Parse", "ReadDigests/X"]
    assert progress.stage_label(names, "stage-1") == "ReadDigests+ParseDigests"
    assert progress.stage_label(["ref_AppliedPTransform_x"], "stage-1") == "stage-1"


def test_format_summary_has_counts_reasons_timings_and_output() -> None:
    text = progress.format_summary(SUMMARY, {"ParseDigests": (1.25, 1), "Write": (0.5, 3)})
    assert text.splitlines()[0] == "digestflow: done in 12 s"
    assert "records 1,200" in text and "dead letters 7" in text
    assert "embedded texts" not in text  # 0 without embeddings: left out
    assert "dead letters by reason: empty_file 2, missing_abstract 5" in text
    assert re.search(r"ParseDigests +1.2 s  \(1 bundle\)", text) and "(3 bundles)" in text
    assert "output: /data/out" in text
    assert "not measured" in progress.format_summary(SUMMARY, {})


def test_tty_rewrites_one_line_in_place() -> None:
    stream = FakeTty()
    reporter = progress.Reporter(stream=stream)
    reporter._emit({"records_parsed": 10}, "ParseDigests", 1.0)  # noqa: SLF001
    reporter._emit({"records_parsed": 20}, "ParseDigests", 2.0)  # noqa: SLF001
    assert stream.getvalue().count("\r\x1b[2K") == 2 and "\n" not in stream.getvalue()
    reporter.finish(SUMMARY)
    assert stream.getvalue().split("\n", 1)[1].startswith("digestflow: done")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("progress-dumps")
    generate(out, GeneratorConfig(records=3000, seed=5, records_per_file=500, malformed_rate=0.02))
    return out


def test_plain_progress_and_summary_when_not_a_tty(
    dumps: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.05)
    out = tmp_path / "out"
    assert main(["run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("digestflow: progress [")]
    assert lines, err
    assert "\r" not in err and "\x1b" not in err
    assert any("parsed" in line for line in lines)
    malformed = sum(1 for r in read_ground_truth(dumps) if r["variant"] == "missing_abstract")
    summary = err[err.index("digestflow: done in") :]
    assert f"records {3000 - malformed:,}" in summary
    assert f"dead letters by reason: missing_abstract {malformed}" in summary
    assert "stage timings (fused stages" in summary and "ParseDigests" in summary
    assert f"output: {out}" in summary


def test_quiet_prints_no_progress_and_no_summary(
    dumps: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.05)
    out = tmp_path / "out"
    argv = ["run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "digestflow: progress" not in err and "digestflow: done" not in err
