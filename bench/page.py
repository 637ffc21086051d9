"""``make bench`` section ``page``: size and load time of the HTML page (issue 17).

Claim under test: the interactive page (``digestflow report DIR --html FILE``) stays one file
that opens at once at any corpus size, because the paper map is capped at
:data:`beam_jobs.query.report_html.MAP_MAX_PAPERS` papers and every table at
:data:`~beam_jobs.query.report_html.TABLE_MAX_ROWS` rows.

**Outputs.** ``small``: :data:`SMALL_RECORDS` generated records, run *with* embeddings (the
real model), so the page has its topic chart and a map of every paper. ``large``:
:data:`LARGE_RECORDS` generated records run with ``--no_embeddings``: embedding that many
texts takes hours on a 2-core machine, so it has no tags and no vectors. ``large+map``: the
``large`` output's page with its map replaced by one of exactly ``MAP_MAX_PAPERS`` papers
(real titles, digest dates and tags of the output's papers with the smallest record ids;
random unit vectors as embeddings, seeded): the map, its hover labels and its neighbour table
are then as big as on any output with that many papers or more, since the cap applies before
anything is computed. Only the topic chart is missing from that page (it is a few KB).

**Measured.** ``render`` = wall time of :func:`~beam_jobs.query.report_html.render` in this
process (median of :data:`REPEATS`, after one warm-up that imports Plotly); ``bytes`` = the
page's size; ``load`` = in headless Chromium (selenium, network blocked, fresh browser per
page, median of ``REPEATS``) from navigation start to the page script's
``window.digestflowReady`` (every Plotly figure drawn), and ``DOMContentLoaded``.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from beam_jobs.launcher import run as run_pipeline
from beam_jobs.query import catalog, report_html
from beam_jobs.synthetic import GeneratorConfig
from bench.common import Settings, corpus, emit, log, pipeline_argv, render_table

SMALL_RECORDS = 1_000
LARGE_RECORDS = 100_000
REPEATS = 3
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--disable-background-networking",
    "--window-size=1200,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
)
READY_JS = (
    "return window.digestflowReady === undefined ? null : "
    "[window.digestflowReady, performance.timing.domContentLoadedEventEnd "
    "- performance.timing.navigationStart]"
)


def build(settings: Settings, name: str, records: int, embeddings: bool) -> Path:
    """A generated corpus and its pipeline output, reused while the output exists."""
    config = GeneratorConfig(records=records, seed=settings.seed)
    inputs = corpus(settings, f"page-{name}", config)
    output = settings.out / "runs" / f"page-{name}"
    if not (output / "manifest.json").exists():
        log(f"page: running the pipeline over {records:,} records into {output}")
        assert run_pipeline(pipeline_argv(inputs, output, embeddings=embeddings))
    return output


def synthetic_map(output: Path) -> report_html.MapPoints:
    """A map of MAP_MAX_PAPERS real papers of ``output`` (titles, dates, tags as the page
    shows them) with seeded random unit vectors in place of embeddings."""
    connection = catalog.connect(str(output))
    try:
        limit = report_html.MAP_MAX_PAPERS
        rows = connection.execute(
            "WITH sample AS (SELECT record_id, cluster_id, title, cluster_size FROM papers "
            f"ORDER BY record_id LIMIT {limit}), days AS (SELECT cluster_id, "
            "list(DISTINCT digest_date) AS dates FROM records WHERE cluster_id IN "
            "(SELECT cluster_id FROM sample) GROUP BY cluster_id) SELECT s.title, "
            "s.cluster_size, d.dates FROM sample s LEFT JOIN days d USING (cluster_id) "
            "ORDER BY s.record_id"
        ).fetchall()
        [(total,)] = connection.execute("SELECT count(*) FROM papers").fetchall()
    finally:
        connection.close()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(rows), 384)).astype(np.float32)
    topics = [f"topic-{i % 14}" for i in range(len(rows))]
    hover = [
        f"<b>{report_html._wrap(title)}</b><br>{report_html.date_list(days)} · {size} "
        f"listings<br>tags: {topic}"
        for (title, size, days), topic in zip(rows, topics, strict=True)
    ]
    neighbours, cosines = report_html.nearest(vectors, report_html.NEIGHBOURS)
    return report_html.MapPoints(
        report_html.pca_2d(vectors.astype(np.float64)),
        [title for title, _, _ in rows],
        hover,
        topics,
        neighbours,
        cosines,
        int(total),
    )


def time_render(output: Path, points: report_html.MapPoints | None) -> tuple[str, float]:
    patch = (
        mock.patch.object(report_html, "map_points", return_value=points)
        if points is not None
        else contextlib.nullcontext()
    )
    seconds = []
    with patch:
        page = report_html.render(str(output))  # warm-up: imports, plotly.js read once
        for _ in range(REPEATS):
            started = time.perf_counter()
            page = report_html.render(str(output))
            seconds.append(time.perf_counter() - started)
    return page, statistics.median(seconds)


def time_load(path: Path) -> tuple[float | None, float | None]:
    """Median (ms to every figure drawn, ms to DOMContentLoaded) in headless Chromium."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, None
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return None, None
    ready, loaded = [], []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as profile:
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
            try:
                driver.get(path.resolve().as_uri())
                deadline = time.monotonic() + 120
                while (times := driver.execute_script(READY_JS)) is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{path} never finished drawing")
                    time.sleep(0.05)
            finally:
                driver.quit()
        ready.append(times[0])
        loaded.append(times[1])
    return statistics.median(ready), statistics.median(loaded)


def section(settings: Settings, results: dict[str, Any]) -> None:
    small = build(settings, "small", SMALL_RECORDS, embeddings=True)
    large = build(settings, "large", LARGE_RECORDS, embeddings=False)
    cases = [
        ("small (embeddings)", small, None),
        ("large (--no_embeddings)", large, None),
        ("large + capped map", large, synthetic_map(large)),
    ]
    rows = []
    for label, output, points in cases:
        log(f"page: rendering {label}")
        page, seconds = time_render(output, points)
        path = settings.out / "runs" / f"page-{label.split()[0]}-{'map' if points else 'real'}.html"
        path.write_text(page, encoding="utf-8")
        ready, loaded = time_load(path)
        [(records, papers)] = catalog.query(
            str(output), "SELECT count(*), count(DISTINCT cluster_id) FROM records"
        )[1]
        mapped = page.count('"customdata"')  # one per map trace; 0: no map
        row = {
            "page": label,
            "records": records,
            "papers": papers,
            "map_traces": mapped,
            "bytes": len(page.encode("utf-8")),
            "render_s": round(seconds, 3),
            "ready_ms": None if ready is None else round(ready),
            "dom_ms": None if loaded is None else round(loaded),
        }
        rows.append(row)
    results["page"] = rows
    emit(
        results,
        render_table(
            "HTML page: size, render() time and headless-Chromium load time",
            ["page", "records", "papers", "MB", "render s", "drawn ms", "DOMContentLoaded ms"],
            [
                (
                    r["page"],
                    r["records"],
                    r["papers"],
                    r["bytes"] / 1e6,
                    r["render_s"],
                    r["ready_ms"],
                    r["dom_ms"],
                )
                for r in rows
            ],
        ),
    )
