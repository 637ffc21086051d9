"""Every named report against generated data whose answers are known.

One real run with embeddings (150 generated records, the real model) is shared by the module.
Expected numbers come from the generator's ground truth (``ground_truth.jsonl``: which slot is
which paper, which variant, whether the paper links code), never from the pipeline's own
output, except for tag counts, which are zero-shot and are recomputed independently from the
Parquet files with pyarrow. ``--threshold 0.7`` makes the clustering of this corpus exact
(docs/benchmarks.md: recall 1.0 at 0.7), so cluster counts equal the true paper counts.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

from beam_jobs.cli.main import main
from beam_jobs.launcher import run
from beam_jobs.query import catalog
from beam_jobs.store import versions
from beam_jobs.store.tables import iter_table
from beam_jobs.synthetic.generator import GeneratorConfig, generate, read_ground_truth
from transforms.records import make_record_id

EXACT_VARIANTS = {"exact", "whitespace", "case", "html"}
NEAR_VARIANTS = {"typo", "truncate", "append_link", "drop_sentence", "change_title"}
# What near_duplicates.sql must call each re-scrape class (drop_sentence of the last sentence
# leaves a prefix, which is indistinguishable from a truncation).
WHAT_CHANGED = {
    "change_title": {"title reworded"},
    "truncate": {"abstract truncated"},
    "append_link": {"text appended"},
    "typo": {"small edits"},
    "drop_sentence": {"text removed", "abstract truncated"},
}
# No revisions: the counts below are those of the lexical variants, which are all found.
CONFIG = GeneratorConfig(
    records=150, seed=21, records_per_file=30, malformed_rate=0.04, revision_rate=0.0
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    dumps = tmp_path_factory.mktemp("report-dumps")
    generate(dumps, CONFIG)
    return dumps


@pytest.fixture(scope="module")
def output(corpus: Path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("report-run") / "out"
    summary = run([f"--input={corpus}/*.txt", f"--output={out}", "--threshold=0.7", "--quiet"])
    assert summary is not None
    return str(out)


@pytest.fixture(scope="module")
def truth(corpus: Path) -> list[dict]:
    """Ground-truth rows of complete records, with the pipeline's ids and dates attached."""
    rows = []
    for row in read_ground_truth(corpus):
        path = str(corpus / row["source_file"])
        date = dt.date.fromisoformat(re.search(r"\d{4}-\d\d-\d\d", row["source_file"])[0])
        rows.append({**row, "path": path, "date": date})
    return rows


def _complete(truth: list[dict]) -> list[dict]:
    return [row for row in truth if row["variant"] != "missing_abstract"]


def _originals(truth: list[dict]) -> dict[str, dict]:
    """paper_id -> its first complete slot (the canonical under the default policy)."""
    return {r["paper_id"]: r for r in _complete(truth) if r["variant"] == "original"}


def _rows(output: str, name: str) -> list[dict]:
    columns, rows = catalog.report(output, name)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _canonical_table(output: str):
    """Canonical records read straight from Parquet (pyarrow, not DuckDB)."""
    table = pa.concat_tables(iter_table(versions.current_root(output), "records"))
    return [row for row in table.to_pylist() if row["is_canonical"]], table.to_pylist()


def test_overview_matches_ground_truth(output: str, truth: list[dict]) -> None:
    complete = _complete(truth)
    papers = len({r["paper_id"] for r in complete})
    malformed = sum(1 for r in truth if r["variant"] == "missing_abstract")
    variants = Counter(r["variant"] for r in complete)
    expected = {
        "records": len(complete),
        "papers": papers,
        "duplicates": len(complete) - papers,
        "duplicates.exact": sum(variants[v] for v in EXACT_VARIANTS),
        "duplicates.other": sum(variants[v] for v in NEAR_VARIANTS),
        "digest_dates": CONFIG.files,
        "source_files": CONFIG.files,
        "dead_letters": malformed,
        "dead_letters.missing_abstract": malformed,
    }
    got: dict[str, int] = {}
    for row in _rows(output, "overview"):
        other = row["metric"].startswith("duplicates.") and row["metric"] != "duplicates.exact"
        key = "duplicates.other" if other else row["metric"]  # near (+ semantic, if any)
        got[key] = got.get(key, 0) + row["value"]
    assert got == expected
    shares = {row["metric"]: row["share"] for row in _rows(output, "overview")}
    assert shares["duplicates"] == round(1 - papers / len(complete), 4)
    assert shares["dead_letters"] == round(malformed / CONFIG.records, 4)


def test_repeats_matches_ground_truth(output: str, truth: list[dict]) -> None:
    originals = _originals(truth)
    seen: dict[str, list[dt.date]] = defaultdict(list)
    for row in _complete(truth):
        seen[row["paper_id"]].append(row["date"])
    expected = {}
    for pid, dates in seen.items():
        if len(dates) > 1:
            first = originals[pid]
            cluster = make_record_id(first["path"], first["record_index"])
            span = (max(dates) - min(dates)).days + 1
            expected[cluster] = (len(dates), len(set(dates)), min(dates), max(dates), span)
    report = _rows(output, "repeats")
    assert len(report) == min(25, len(expected))
    for row in report:
        got = (
            row["appearances"],
            row["days_seen"],
            row["first_seen"],
            row["last_seen"],
            row["span_days"],
        )
        assert got == expected[row["cluster_id"]]
    order = sorted(expected.values(), key=lambda e: (-e[1], -e[4], -e[0]))[: len(report)]
    assert [(r["days_seen"], r["span_days"], r["appearances"]) for r in report] == [
        (e[1], e[4], e[0]) for e in order
    ]
    assert report[0]["days_seen"] >= 2


def test_topics_match_the_tags_in_parquet(output: str, truth: list[dict]) -> None:
    canonicals, _ = _canonical_table(output)
    papers = Counter(tag for row in canonicals for tag in row["tags"])
    appearances = Counter()
    sizes = Counter(row["cluster_id"] for row in _canonical_table(output)[1])
    for row in canonicals:
        for tag in row["tags"]:
            appearances[tag] += sizes[row["cluster_id"]]
    report = _rows(output, "topics")
    assert {r["tag"]: r["papers"] for r in report} == dict(papers)
    assert {r["tag"]: r["appearances"] for r in report} == dict(appearances)
    for r in report:
        assert r["share"] == round(papers[r["tag"]] / len(canonicals), 4)
        assert r["kind"] == (
            "paper_type" if r["tag"] in ("survey", "benchmark", "has-code") else "topic"
        )
    # rule-based tags are known from the ground truth on this corpus
    originals = _originals(truth).values()
    assert papers["has-code"] == sum(1 for r in originals if r["has_code"])
    assert papers["survey"] == sum(1 for r in originals if r["paper_type"] == "survey")


def test_topic_trend_matches_tags_per_day(output: str, truth: list[dict]) -> None:
    _, records = _canonical_table(output)
    listed: dict[dt.date, dict[str, list[str]]] = defaultdict(dict)
    for row in records:
        listed[row["digest_date"]][row["cluster_id"]] = row["tags"]
    expected = {}
    for day, papers in listed.items():
        for tag, n in Counter(t for tags in papers.values() for t in tags).items():
            expected[(day, tag)] = (n, round(n / len(papers), 4))
    report = _rows(output, "topic_trend")
    assert {(r["digest_date"], r["tag"]): (r["papers"], r["share"]) for r in report} == expected
    # the number of distinct papers listed per day is known from the ground truth
    per_day = defaultdict(set)
    for row in _complete(truth):
        per_day[row["date"]].add(row["paper_id"])
    assert {day: len(p) for day, p in per_day.items()} == {d: len(p) for d, p in listed.items()}
    assert [r["digest_date"] for r in report] == sorted(r["digest_date"] for r in report)


def test_near_duplicates_say_what_changed(output: str, truth: list[dict]) -> None:
    by_id = {make_record_id(r["path"], r["record_index"]): r for r in _complete(truth)}
    originals = _originals(truth)
    report = _rows(output, "near_duplicates")
    variants = [by_id[r["record_id"]]["variant"] for r in report]
    assert Counter(variants) == Counter(
        r["variant"] for r in _complete(truth) if r["variant"] in NEAR_VARIANTS
    )
    for row, variant in zip(report, variants, strict=True):
        truth_row = by_id[row["record_id"]]
        original = originals[truth_row["paper_id"]]
        assert row["canonical_record_id"] == make_record_id(
            original["path"], original["record_index"]
        )
        assert row["what_changed"] in WHAT_CHANGED[variant], (variant, row)
        assert 0.7 <= row["similarity"] <= 1.0
        if variant == "append_link":
            assert row["links_added"] >= 1 and row["abstract_chars"] > 0
        if variant == "change_title":
            assert row["title_edits"] > 0 and row["abstract_chars"] == 0
    assert [r["similarity"] for r in report] == sorted(r["similarity"] for r in report)


def test_code_by_tag_matches_ground_truth(output: str, truth: list[dict]) -> None:
    originals = _originals(truth)
    linked_later = {r["paper_id"] for r in _complete(truth) if r["variant"] == "append_link"}
    report = _rows(output, "code_by_tag")
    total = report[0]
    assert total["tag"] == "(all papers)"
    assert total["papers"] == len(originals)
    assert total["with_code"] == sum(1 for r in originals.values() if r["has_code"])
    assert total["code_only_in_copy"] == sum(
        1 for pid in linked_later if not originals[pid]["has_code"]
    )
    canonicals, _ = _canonical_table(output)
    for row in report[1:]:
        tagged = [c for c in canonicals if row["tag"] in c["tags"]]
        with_code = sum(1 for c in tagged if c["code_urls"])
        assert (row["papers"], row["with_code"]) == (len(tagged), with_code)
        assert row["code_share"] == round(with_code / len(tagged), 4)
    assert "has-code" not in {r["tag"] for r in report}


def _documented_columns(name: str) -> list[str]:
    """Column names listed under 'Columns:' in a report's header comment."""
    doc = catalog.report_doc(name).split("Columns:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  (\w+)\s", doc, flags=re.MULTILINE)]


@pytest.mark.parametrize("name", catalog.report_names())
def test_every_report_documents_its_columns(output: str, name: str) -> None:
    columns, _ = catalog.report(output, name)
    assert catalog.report_summary(name), f"{name}.sql has no header line"
    assert _documented_columns(name) == columns


def test_report_cli(output: str, capsys) -> None:
    assert main(["report", output, "--list"]) == 0
    listed = capsys.readouterr().out
    for name in catalog.report_names():
        assert name in listed
    assert main(["report", output, "overview", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "metric,value,share"
    assert main(["report", output, "repeats", "--sql"]) == 0
    assert capsys.readouterr().out.startswith("-- repeats:")
    assert main(["report", output, "no_such_report"]) == 2
    assert "unknown report" in capsys.readouterr().err


def test_reports_are_package_data() -> None:
    """pyproject ships beam_jobs/reports/*.sql (checked on the source tree's config)."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"reports/*.sql"' in pyproject
    shipped = Path(catalog.__file__).with_name("reports")
    assert sorted(p.stem for p in shipped.glob("*.sql")) == catalog.report_names()
    assert os.path.getsize(shipped / "overview.sql") > 0


CHARTS_JS = """
return Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const plot = f.querySelector('.plot');
  return [f.id, plot ? plot.dataset.plotted : null,
          plot ? plot.getBoundingClientRect().width : 0];
});
"""
REFERENCES_JS = """
return Array.from(document.querySelectorAll('[src],[href]'))
  .map(e => e.getAttribute('src') || e.getAttribute('href'))
  .filter(u => !u.startsWith('data:'));
"""


def test_html_report_renders_its_charts_in_chromium(
    output: str, tmp_path: Path, headless_chromium
) -> None:
    page = tmp_path / "report.html"
    assert main(["report", output, "--html", str(page)]) == 0
    driver = headless_chromium(tmp_path / "profile")
    try:
        driver.get(page.as_uri())
        deadline = time.monotonic() + 60  # until the page's script has drawn every figure
        while not driver.execute_script("return document.body.dataset.ready === '1'"):
            assert time.monotonic() < deadline, "the page never finished drawing"
            time.sleep(0.05)
        charts = {
            key: (rendered, width) for key, rendered, width in driver.execute_script(CHARTS_JS)
        }
        references = driver.execute_script(REFERENCES_JS)
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        records = driver.execute_script(
            "return document.querySelector(\"[data-metric='records'] .value\").textContent"
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert set(charts) == {
        "chart-topic-share",
        "chart-cluster-sizes",
        "chart-duplicate-kinds",
        "chart-embedding-map",
    }
    for key, (rendered, width) in charts.items():
        assert rendered == "1" and width > 300, (key, rendered, width)  # plotted, laid out
    assert references == [] and fetched == [], "the page must not load anything"
    (expected,) = catalog.query(output, "SELECT count(*) FROM records")[1][0]
    assert records == f"{expected:,}"
