"""Hostile `run` options: refused before anything runs, with one clear error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_jobs.cli.main import main

DUMP = "Paper One\nWe propose a method for things that work well in practice.\n"


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "digest_2024-03-13.txt"
    path.write_text(DUMP)
    return path


def refused(capsys, argv: list[str], output: Path) -> str:
    """Run the CLI in-process; the one error line it printed (and check nothing was written)."""
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("digestflow: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "usage:" not in stderr
    assert not output.exists()
    return errors[0]


@pytest.mark.parametrize("year", ["99999", "0", "-5", "1899", "2100", "nineteen"])
def test_digest_year_outside_a_sane_range_is_refused(capsys, dump, tmp_path, year) -> None:
    out = tmp_path / "out"
    line = refused(
        capsys, ["run", f"--input={dump}", f"--output={out}", f"--digest_year={year}"], out
    )
    assert "--digest_year" in line


def test_digest_year_in_range_dates_the_date_lines(capsys, tmp_path) -> None:
    dump, out = tmp_path / "page.txt", tmp_path / "out"
    dump.write_text("Mar 13\n" + DUMP)
    argv = ["run", f"--input={dump}", f"--output={out}", "--no_embeddings", "--quiet"]
    assert main([*argv, "--digest_year=2031"]) == 0
    capsys.readouterr()
    assert main(["sql", str(out), "SELECT digest_date FROM records", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["digest_date", "2031-03-13"]


def test_missing_model_directory_is_refused_before_the_pipeline(capsys, dump, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["run", f"--input={dump}", f"--output={out}", f"--embedding_model={tmp_path}/none"]
    assert "no such directory" in refused(capsys, argv, out)


def test_empty_model_directory_is_refused_before_the_pipeline(capsys, dump, tmp_path) -> None:
    out, model = tmp_path / "out", tmp_path / "model"
    model.mkdir()
    argv = ["run", f"--input={dump}", f"--output={out}", f"--embedding_model={model}"]
    assert "not a sentence-transformers model" in refused(capsys, argv, out)


def test_max_seq_length_above_the_model_limit_is_refused(capsys, dump, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["run", f"--input={dump}", f"--output={out}", "--max_seq_length=100000"]
    assert "512 word pieces" in refused(capsys, argv, out)


def test_a_double_dash_gets_a_sensible_message(capsys, dump, tmp_path) -> None:
    out = tmp_path / "out"
    line = refused(capsys, ["run", "--", f"--input={dump}", f"--output={out}"], out)
    assert "'--' is not needed" in line and "did you mean" not in line


@pytest.mark.parametrize(
    "option",
    [
        "--threshold=abc",
        "--canonical_policy=newest",
        "--num_perm",
        "--direct_num_workers=x",
        "--direct_num_workers=383",
    ],
)
def test_a_bad_option_value_is_one_line_not_the_usage(capsys, dump, tmp_path, option) -> None:
    out = tmp_path / "out"
    refused(capsys, ["run", f"--input={dump}", f"--output={out}", option], out)


@pytest.mark.parametrize(
    "option",
    [
        "--semantic_threshold=7",
        "--semantic_threshold=nan",
        "--semantic_vector_bits=0",
        "--semantic_vector_bits=33",
        "--semantic_vector_bands=-1",
        "--semantic_vector_bands=x",
    ],
)
@pytest.mark.parametrize("embeddings", [[], ["--no_embeddings"]])
def test_a_bad_semantic_setting_is_refused(capsys, dump, tmp_path, option, embeddings):
    out = tmp_path / "out"
    argv = ["run", f"--input={dump}", f"--output={out}", option, *embeddings]
    assert option.split("=")[0] in refused(capsys, argv, out)


@pytest.mark.parametrize("flag", ["--taxonomy", "--tag_examples"])
def test_a_broken_file_option_is_refused_even_where_unused(capsys, dump, tmp_path, flag) -> None:
    # with --no_embeddings nothing is tagged, but a broken file named on purpose is a mistake
    broken = tmp_path / "broken.toml"
    broken.write_text("[[topic]\nname = ")
    out = tmp_path / "out"
    argv = ["run", f"--input={dump}", f"--output={out}", "--no_embeddings", f"{flag}={broken}"]
    line = refused(capsys, argv, out)
    assert str(broken) in line or "taxonomy" in line or "--tag_examples" in line
