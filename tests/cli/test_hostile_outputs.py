"""Damaged output directories and hostile query options, as a user meets them: every command
that reads an output (``sql`` and its shell, ``catalog``, ``report``, ``similar``) ends in one
``digestflow: error:`` line naming the broken file and exit status 2, and an output path is
taken literally (``out[1]`` is a directory name, not a glob)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs.cli.main import main
from beam_jobs.store import versions
from beam_jobs.synthetic.generator import GeneratorConfig, generate

VERSION = "v000001"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-dumps")
    generate(out, GeneratorConfig(records=60, seed=5, records_per_file=30))
    return out


@pytest.fixture(scope="module")
def good(dumps: Path, tmp_path_factory) -> Path:
    """A small finished output without embeddings (copied, never damaged in place)."""
    out = tmp_path_factory.mktemp("hostile-run") / "out"
    argv = ["run", f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet"]
    assert main(argv) == 0
    return out


@pytest.fixture
def output(good: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(good, copy)
    return copy


def root_of(output: Path) -> Path:
    """The current version's directory, as a reader resolves it (before any damage)."""
    return Path(versions.current_root(str(output)))


def trusted_manifest(output: Path) -> Path:
    """The file a reader takes the current version from: the newest commit record, or
    ``manifest.json`` in an output written before the commit log."""
    records = sorted((output / "commits").glob("*.json"))
    return records[-1] if records else output / "manifest.json"


def without_commit_log(output: Path) -> Path:
    """``output`` as an older digestflow wrote it: ``manifest.json`` alone names the version,
    and lists no files."""
    shutil.rmtree(output / "commits", ignore_errors=True)
    manifest = json.loads((output / "manifest.json").read_text())
    manifest.pop("files", None)
    (output / "manifest.json").write_text(json.dumps(manifest))
    return output


@pytest.fixture(params=["commit log", "manifest only"])
def layouts(request, output: Path) -> Path:
    return output if request.param == "commit log" else without_commit_log(output)


def parquet_file(output: Path, table: str) -> Path:
    (path,) = sorted((root_of(output) / table).glob("part-0*.parquet"))
    return path


def one_error(capsys, argv: list[str], stdin: str | None = None) -> str:
    """Run the CLI in-process; the one error line it printed on stderr."""
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        assert main(argv) == 2
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("digestflow: error: "), captured.err
    return lines[0]


def readers(output: Path, tmp_path: Path) -> list[tuple[list[str], str | None]]:
    """Every command that reads an output, with the stdin it needs."""
    dir_ = str(output)
    return [
        (["sql", dir_, "SELECT count(*) FROM records"], None),
        (["sql", dir_], "SELECT count(*) FROM papers;\n"),  # the shell, piped
        (["catalog", dir_], None),
        (["catalog", dir_, "--sql"], None),
        (["report", dir_, "overview"], None),
        (["report", dir_, "--html", str(tmp_path / "page.html")], None),
        (["similar", dir_, "diffusion"], None),
        (["verify", dir_], None),
    ]


def assert_every_reader_says(capsys, output: Path, tmp_path: Path, *expected: str) -> None:
    for argv, stdin in readers(output, tmp_path):
        line = one_error(capsys, argv, stdin)
        for text in expected:
            assert text in line, (argv, line)
    assert not (tmp_path / "page.html").exists()


# ---- a version directory, a Parquet file gone or damaged -------------------------------------


def test_a_missing_version_directory_is_named(capsys, layouts: Path, tmp_path: Path) -> None:
    output = layouts
    source, root = trusted_manifest(output), root_of(output)
    shutil.rmtree(root)
    assert_every_reader_says(capsys, output, tmp_path, str(source), str(root), "missing")


@pytest.mark.parametrize("table", ["records", "clusters", "inputs"])
@pytest.mark.parametrize("keep", [0, 100, -8], ids=["emptied", "truncated", "footer-cut"])
def test_a_truncated_parquet_file_is_named(capsys, layouts, tmp_path, table, keep) -> None:
    """Caught by its size where the commit record lists it, else (and for a footer
    overwritten in place, same size) by reading the footer."""
    path = parquet_file(layouts, table)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep] + b"XXXXXXXX")
    assert_every_reader_says(capsys, layouts, tmp_path, str(path))


def test_a_table_whose_files_were_all_deleted_is_named(capsys, layouts, tmp_path) -> None:
    records = root_of(layouts) / "records"
    for path in records.iterdir():
        path.unlink()
    assert_every_reader_says(capsys, layouts, tmp_path, str(records))


def test_a_deleted_file_listed_by_the_commit_record_is_named(capsys, output, tmp_path) -> None:
    path = parquet_file(output, "inputs")
    path.unlink()
    assert_every_reader_says(capsys, output, tmp_path, str(path), "missing")


def read_records(path: Path) -> pa.Table:
    """A records file of an output without embeddings. pyarrow cannot read back the all-null
    fixed-size embedding column it wrote ("Expected all lists to be of size=384"), so that
    column is read as what it is: nulls."""
    schema = pq.read_schema(path)
    rows = pq.read_table(path, columns=[n for n in schema.names if n != "embedding"])
    nulls = pa.nulls(rows.num_rows, schema.field("embedding").type)
    return rows.append_column(schema.field("embedding"), nulls).select(schema.names).cast(schema)


def test_one_deleted_file_of_several_is_detected_by_its_rows(capsys, output, tmp_path) -> None:
    """Without a commit record to list the files, a table of two files that loses one is
    found by the run summary, which still counts all rows written."""
    output = without_commit_log(output)
    path = parquet_file(output, "records")
    rows = read_records(path)
    half = rows.num_rows // 2
    pq.write_table(rows.slice(0, half), path.with_name("part-00000-of-00002.parquet"))
    pq.write_table(rows.slice(half), path.with_name("part-00001-of-00002.parquet"))
    path.unlink()
    assert main(["sql", str(output), "SELECT count(*) FROM records"]) == 0  # still whole
    capsys.readouterr()
    path.with_name("part-00001-of-00002.parquet").unlink()
    assert_every_reader_says(capsys, output, tmp_path, f"holds {half} rows", "run_summary.json")


def test_an_output_from_before_a_table_existed_is_not_damaged(capsys, output) -> None:
    """No directory at all for a table is an older output (that table gets no view), not a
    deleted file."""
    output = without_commit_log(output)  # such an output is older than the commit log too
    shutil.rmtree(root_of(output) / "paper_names")
    assert main(["sql", str(output), "SELECT count(*) FROM papers"]) == 0


# ---- the manifest ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"format": 1},
        {},
        None,
        "v000001",
        42,
        {"format": "1", "version": 1, "root": VERSION},
        {"format": True, "version": 1, "root": VERSION},
        {"format": 1, "version": "1", "root": VERSION},
        {"format": 1, "version": True, "root": VERSION},
        {"format": 1, "version": 0, "root": VERSION},
        {"format": 1, "version": 1.5, "root": VERSION},
        {"format": 1, "version": 1, "root": 1},
        {"format": 1, "version": 1, "root": "../../etc"},
        {"format": 1, "version": 1, "root": "/tmp"},
        {"format": 1, "version": 1, "root": None},
    ],
    ids=repr,
)
def test_a_manifest_of_the_wrong_shape_is_named(capsys, layouts, tmp_path, document) -> None:
    source = trusted_manifest(layouts)
    source.write_text(json.dumps(document))
    assert_every_reader_says(capsys, layouts, tmp_path, str(source), "damaged", "--overwrite")


def test_a_manifest_from_a_newer_digestflow_says_to_upgrade(capsys, layouts, tmp_path) -> None:
    source = trusted_manifest(layouts)
    document = {**json.loads(source.read_text()), "format": 2}
    source.write_text(json.dumps(document))
    assert_every_reader_says(capsys, layouts, tmp_path, "format 2", "upgrade digestflow")


@pytest.mark.parametrize(
    "garbage", [b"garbage", b"", b'{"format": 1, "vers', b"\xff\xfe\x00{", b"\x00" * 64]
)
def test_a_garbage_manifest_says_which_file_and_what_to_do(capsys, layouts, tmp_path, garbage):
    source = trusted_manifest(layouts)
    source.write_bytes(garbage)
    for argv, stdin in readers(layouts, tmp_path):
        line = one_error(capsys, argv, stdin)
        assert f"{source} is damaged" in line
        assert "restore it" in line and "--overwrite" in line
        assert "Expecting" not in line and "line 1 column" not in line


def test_a_garbage_manifest_is_replaced_by_overwrite_as_advised(capsys, layouts, dumps) -> None:
    output = layouts
    trusted_manifest(output).write_text("garbage")
    run = ["run", f"--input={dumps}/*.txt", f"--output={output}", "--no_embeddings", "--quiet"]
    assert "--overwrite" in one_error(capsys, run)
    assert "--overwrite" in one_error(capsys, [*run, "--incremental"])
    assert main([*run, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["sql", str(output), "SELECT count(*) AS n FROM records", "--format=csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "60"]
    assert versions.read_manifest(str(output)).version == 2


def test_a_manifest_that_is_a_directory_is_named(capsys, layouts, tmp_path) -> None:
    source = trusted_manifest(layouts)
    source.unlink()
    source.mkdir()
    assert_every_reader_says(capsys, layouts, tmp_path, str(source))


def test_a_damaged_output_in_the_shell_subprocess(output: Path) -> None:
    """The interactive shell as a real process: one line on stderr, exit 2, no traceback."""
    shutil.rmtree(root_of(output))
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", "sql", str(output)],
        input="SELECT count(*) FROM records;\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("digestflow: error: ") and "missing" in done.stderr


# ---- similar ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", ["-1", "0", "1001", str(10**30), "ten", "1.5", ""])
def test_similar_refuses_a_k_that_is_not_a_small_count(capsys, good: Path, k: str) -> None:
    line = one_error(capsys, ["similar", str(good), "diffusion", "-k", k])
    assert "argument -k" in line and ("1 to 1000" in line or "whole number" in line)


def test_similar_on_an_output_without_embeddings_says_so(capsys, good: Path) -> None:
    line = one_error(capsys, ["similar", str(good), "diffusion models", "-k", "3"])
    assert line == (
        "digestflow: error: this output has no embeddings (it was built with --no_embeddings)"
    )


def test_similar_refuses_a_model_directory_that_is_not_there(capsys, good, tmp_path) -> None:
    """Checked after the output: here the output has no embeddings, so that is the error."""
    line = one_error(capsys, ["similar", str(good), "x", "--model", str(tmp_path / "none")])
    assert "no embeddings" in line


# ---- output paths are taken literally --------------------------------------------------------


@pytest.mark.parametrize("name", ["out[1]", "out*?"])
def test_an_output_path_with_glob_characters_is_that_directory(capsys, dumps, tmp_path, name):
    parent = tmp_path / "runs[1]"  # a glob character above the output too
    output = parent / name
    decoy = parent / "out1"  # what the pattern out[1] would match
    shutil.copytree(dumps, decoy)
    run = ["run", f"--input={dumps}/*.txt", f"--output={output}", "--no_embeddings", "--quiet"]
    assert main(run) == 0
    capsys.readouterr()
    left = [p for p in parent.rglob("*") if "probe" in p.name]
    assert not left, f"write probe left behind: {left}"
    assert sorted(os.listdir(decoy)) == sorted(os.listdir(dumps)), "a matched decoy was touched"
    assert main(["sql", str(output), "SELECT count(*) AS n FROM papers", "--format=csv"]) == 0
    papers = int(capsys.readouterr().out.splitlines()[1])
    assert main(["report", str(output), "overview", "--format=csv"]) == 0
    assert f"papers,{papers}," in capsys.readouterr().out
    # refused as an existing run (not as "not writable"), then replaced with --overwrite
    assert "already holds a digestflow run" in one_error(capsys, run)
    assert main([*run, "--overwrite"]) == 0
    assert versions.read_manifest(str(output)).version == 2
    assert root_of(output).parent == output
    assert not [p for p in parent.rglob("*") if "probe" in p.name]


def test_an_unwritable_output_is_refused_without_creating_anything(capsys, dumps, tmp_path):
    blocker = tmp_path / "file[1]"
    blocker.write_text("not a directory")
    line = one_error(capsys, ["run", f"--input={dumps}/*.txt", f"--output={blocker}/out"])
    assert "cannot create output directory" in line
    assert sorted(os.listdir(tmp_path)) == ["file[1]"]
