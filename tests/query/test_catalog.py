"""The DuckDB catalog from a user's side: pasteable views, the SQL shell, an HTML page for an
output without embeddings. (Reports with known answers: tests/test_reports.py.)"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from beam_jobs.cli.main import main
from beam_jobs.launcher import run
from beam_jobs.query import catalog, report_html
from beam_jobs.store import versions
from beam_jobs.store.tables import table_dir
from beam_jobs.synthetic.generator import GeneratorConfig, generate, read_ground_truth
from transforms.schema import TABLES

COUNTS = (
    "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM clusters), "
    "(SELECT count(*) FROM dead_letter), (SELECT count(*) FROM papers)"
)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("catalog-dumps")
    generate(out, GeneratorConfig(records=200, seed=8, records_per_file=50, malformed_rate=0.03))
    return out


@pytest.fixture(scope="module")
def output(dumps: Path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("catalog-run") / "out"
    assert run([f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet"])
    return str(out)


def test_printed_views_work_in_a_fresh_duckdb(output: str, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(Path(output).parent)
    assert main(["catalog", Path(output).name, "--sql"]) == 0  # a relative DIR
    script = capsys.readouterr().out
    assert script.count("CREATE OR REPLACE VIEW") == len(TABLES) + 1  # + papers
    for path in re.findall(r"read_parquet\('([^']+)'\)", script):
        assert os.path.isabs(path)
    monkeypatch.chdir(tmp_path)  # paths must not depend on where the script is run
    connection = duckdb.connect()
    connection.execute(script)
    assert connection.execute(COUNTS).fetchone() == tuple(catalog.query(output, COUNTS)[1][0])


def test_catalog_lists_the_views_and_columns(output: str, capsys) -> None:
    assert main(["catalog", output, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "view,column,type"
    views = {line.split(",")[0] for line in rows[1:]}
    assert views == {*TABLES, "papers"}
    assert "papers,cluster_size,BIGINT" in rows


def test_papers_view_is_canonical_records_with_cluster_facts(output: str) -> None:
    _, rows = catalog.query(
        output,
        "SELECT count(*), count(DISTINCT cluster_id), bool_and(is_canonical), "
        "sum(cluster_size), bool_and(first_seen <= last_seen) FROM papers",
    )
    papers, clusters, canonical, sizes, ordered = rows[0]
    (records,) = catalog.query(output, "SELECT count(*) FROM records")[1][0]
    assert papers == clusters and canonical and ordered
    assert sizes == records


def test_sql_shell_reads_piped_statements(output: str, dumps: Path, monkeypatch, capsys):
    script = (
        "SELECT count(*) AS n\n  FROM dead_letter;\n"
        ".tables\n"
        "SELECT no_such_column FROM records;\n"
        "SELECT 41 + 1 AS answer"  # the last statement may lack its ';'
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["sql", output]) == 2  # piped input with an error: non-zero exit
    out = capsys.readouterr().out.splitlines()
    malformed = sum(1 for r in read_ground_truth(dumps) if r["variant"] == "missing_abstract")
    width = max(1, len(str(malformed)))
    assert [line.rstrip() for line in out[:3]] == [
        "n".ljust(width).rstrip(),
        "-" * width,
        str(malformed),
    ]
    assert not any("sql>" in line for line in out), "no prompts when stdin is not a terminal"
    assert {"papers", "dead_letter"} <= {line.strip() for line in out}  # .tables
    assert any(line.startswith("SQL error") and "no_such_column" in line for line in out)
    assert [line.rstrip() for line in out[-4:]] == ["answer", "------", "42", "(1 row)"]


def test_the_shell_points_changes_reports_to_the_report_command(output: str, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(".report changes_new\n.report overview\n"))
    assert main(["sql", output]) == 2  # one command of the script failed
    out = capsys.readouterr().out
    assert "changes_new compares two versions: run `digestflow report DIR changes`" in out
    assert "records" in out  # the script went on: overview ran


def test_sql_shell_as_a_subprocess(output: str, dumps: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", "sql", output],
        input="SELECT count(*) AS dead FROM dead_letter;\n.report overview\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    malformed = sum(1 for r in read_ground_truth(dumps) if r["variant"] == "missing_abstract")
    lines = done.stdout.splitlines()
    assert [line.rstrip() for line in lines[:3]] == ["dead", "----", str(malformed)]
    assert any(line.startswith("dead_letters.missing_abstract") for line in lines)


def test_an_output_from_before_a_table_existed_still_opens(output: str, tmp_path: Path):
    old = tmp_path / "old"
    shutil.copytree(output, old)
    # such an output is older than the commit log too: no record, no file list
    shutil.rmtree(old / "commits")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("files", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(Path(table_dir(versions.current_root(str(old)), "dead_letter")))
    assert "dead_letter" not in " ".join(catalog.view_statements(str(old)))
    assert catalog.query(str(old), "SELECT count(*) FROM papers")[1][0][0] > 0


def test_not_an_output_is_one_clear_error(tmp_path: Path, capsys) -> None:
    for argv in (["sql", str(tmp_path)], ["catalog", str(tmp_path), "--sql"]):
        assert main(argv) == 2
        assert "not a digestflow output" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "overview"]) == 2
    assert main(["report", str(tmp_path), "--html", str(tmp_path / "r.html")]) == 2


def test_html_without_embeddings_omits_those_charts_with_a_note(output: str, tmp_path: Path):
    page = Path(report_html.write_report(output, str(tmp_path / "r.html"))).read_text()
    rendered = dict(re.findall(r"id='chart-([\w-]+)' data-rendered='(\d)'", page))
    assert rendered == {
        "topic-share": "0",
        "cluster-sizes": "1",
        "duplicate-kinds": "1",
        "embedding-map": "0",
    }
    assert "No topic tags in this output" in page and "No embeddings in this output" in page
    # nothing may be fetched (plotly.js is inlined; tests/query/test_page_browser.py loads
    # the page with the network blocked)
    assert not re.search(
        r"""<(script|link|img|iframe)\b[^>]*\b(src|href)=['"]?(https?:)?//""", page
    )


def test_pca_2d_finds_the_directions_of_largest_variance() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 5)) * np.array([10.0, 0.1, 3.0, 0.1, 0.1])
    projected = report_html.pca_2d(points)
    assert projected.shape == (500, 2)
    assert abs(np.corrcoef(projected[:, 0], points[:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(projected[:, 1], points[:, 2])[0, 1]) > 0.99
    assert report_html.pca_2d(points[:1]).shape == (1, 2)


def test_size_histogram_and_top_tag() -> None:
    assert report_html.size_histogram([1, 1, 2, 7, 5000])[:3] == [("1", 2), ("2", 1), ("3", 0)]
    assert report_html.size_histogram([1, 1, 2, 7, 5000])[-1] == (">1000", 1)
    assert report_html.size_histogram([]) == []
    scores = [{"tag": "graphs", "score": 0.2}, {"tag": "theory", "score": 0.5}]
    assert report_html.top_tag(scores, ["graphs"]) == "theory"
    assert report_html.top_tag(None, ["has-code", "graphs"]) == "graphs"
    assert report_html.top_tag(None, None) == "untagged"
