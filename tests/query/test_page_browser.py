"""The interactive HTML page (``digestflow report DIR --html FILE``) in a real browser.

One real output with embeddings, shared by the module: 240 generated records in 6 daily
dumps, built as a first run over 5 days plus an ``--incremental`` update with the sixth, so
the page's "Today" section compares version 2 against version 1. The page is opened in
headless Chromium through selenium with the network blocked (every host name resolves to
nothing and the proxy is a closed port): it must load, draw every Plotly figure and log no
console error. Then the map's hover (a real mouse move onto a dot) must show that paper's
title, a click must list its nearest papers (checked against cosines recomputed from the
Parquet files with numpy), a search box must filter its table and a header click must sort.

Skipped cleanly when /usr/bin/chromium, /usr/bin/chromedriver or selenium are missing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from beam_jobs.launcher import run
from beam_jobs.query import catalog, report_html
from beam_jobs.store import commits, versions
from beam_jobs.store.tables import iter_table
from beam_jobs.synthetic.generator import GeneratorConfig, generate

CONFIG = GeneratorConfig(records=240, seed=11, records_per_file=40, malformed_rate=0.02)
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*['"](?!data:|#)""", re.IGNORECASE)


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> str:
    dumps = tmp_path_factory.mktemp("page-dumps")
    generate(dumps, CONFIG)
    days = sorted(dumps.glob("*.txt"))
    assert len(days) == 6
    base, update = dumps / "base", dumps / "update"
    base.mkdir()
    update.mkdir()
    for day in days[:-1]:
        day.rename(base / day.name)
    days[-1].rename(update / days[-1].name)
    out = tmp_path_factory.mktemp("page-run") / "out"
    assert run([f"--input={base}/*.txt", f"--output={out}", "--quiet"])
    assert run([f"--input={update}/*.txt", f"--output={out}", "--incremental", "--quiet"])
    return str(out)


@pytest.fixture(scope="module")
def page(output: str, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    report_html.write_report(output, str(path))
    return path


def wait_until_ready(driver, timeout: float = 60.0) -> None:
    """Until the page's script has drawn every figure (it sets body[data-ready])."""
    deadline = time.monotonic() + timeout
    while not driver.execute_script("return document.body.dataset.ready === '1'"):
        assert time.monotonic() < deadline, "the page never finished drawing its figures"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(page: Path, tmp_path_factory, headless_chromium):
    driver = headless_chromium(tmp_path_factory.mktemp("profile"))
    try:
        driver.get(page.as_uri())
        wait_until_ready(driver)
        yield driver
    finally:
        driver.quit()


def test_page_is_one_file_that_loads_offline(page: Path, browser) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count(report_html.plotly_js()) == 1, "plotly.js is inlined exactly once"
    assert not EXTERNAL.search(_without_plotly(text)), "the page must reference nothing"
    references = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]'))"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => !u.startsWith('data:') && !u.startsWith('#'))"
    )
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert references == [] and fetched == [], "the page must not load anything"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    figures = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure.chart')).map(f => {"
        "  const plot = f.querySelector('.plot');"
        "  return [f.id, plot ? plot.dataset.plotted : null,"
        "          plot ? plot.getBoundingClientRect().width : 0]; })"
    )
    assert {key for key, *_ in figures} == {
        "chart-topic-share",
        "chart-cluster-sizes",
        "chart-duplicate-kinds",
        "chart-embedding-map",
    }
    for key, plotted, width in figures:
        assert plotted == "1" and width > 300, (key, plotted, width)
    (records,) = catalog.query(output_of(page), "SELECT count(*) FROM records")[1][0]
    shown = browser.execute_script(
        "return document.querySelector(\"[data-metric='records'] .value\").textContent"
    )
    assert shown == f"{records:,}"


def _without_plotly(text: str) -> str:
    """The page minus the plotly.js bundle (whose code holds link literals it never loads on
    this page: the Plotly logo is off, and map tiles are for mapbox traces)."""
    return text.replace(report_html.plotly_js(), "")


def output_of(page: Path) -> str:
    """The output directory the page was written for (its subtitle names the version root)."""
    root = re.search(r"<p class='sub'>([^<]+?) · generated", page.read_text("utf-8"))[1]
    return str(Path(root).parent)


# The dot farthest from any other, in page pixels relative to the map's centre: hovering or
# clicking there can only mean that dot.
LONELY_DOT_JS = """
const gd = document.getElementById('plot-embedding-map');
gd.scrollIntoView({block: 'center'});
const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
const dots = [];
gd._fullData.forEach(trace => {
  for (let i = 0; i < trace.x.length; i++) {
    dots.push([xa._offset + xa.l2p(trace.x[i]), ya._offset + ya.l2p(trace.y[i]),
               trace.customdata[i]]);
  }
});
let best = null, bestGap = -1;
for (const a of dots) {
  let gap = Infinity;
  for (const b of dots) if (a !== b) gap = Math.min(gap, Math.hypot(a[0] - b[0], a[1] - b[1]));
  if (gap > bestGap) { bestGap = gap; best = a; }
}
const box = gd.getBoundingClientRect();
return [best[0] - box.width / 2, best[1] - box.height / 2, best[2], bestGap];
"""


def _hover_lonely_dot(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    dx, dy, index, gap = browser.execute_script(LONELY_DOT_JS)
    assert gap > 4, "no dot on the map stands apart from the others"
    element = browser.find_element(By.ID, "plot-embedding-map")
    actions = ActionChains(browser).move_to_element_with_offset(element, round(dx), round(dy))
    actions.perform()
    return index, actions


def _map_data(browser) -> dict:
    return json.loads(
        browser.execute_script("return document.getElementById('map-data').textContent")
    )


def test_the_map_shows_title_dates_and_tags_on_hover(browser) -> None:
    index, _ = _hover_lonely_dot(browser)
    title = _map_data(browser)["titles"][index]
    deadline = time.monotonic() + 10
    while True:
        labels = browser.execute_script(
            "return Array.from(document.querySelectorAll('#chart-embedding-map .hovertext'))"
            ".map(e => e.textContent)"
        )
        if labels or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(labels) == 1, labels
    words = title.split()
    assert all(word in labels[0] for word in words), (title, labels)  # wrapped over lines
    assert "tags:" in labels[0] and re.search(r"\b20\d\d\b", labels[0])  # tags and dates


def test_a_click_on_the_map_lists_the_nearest_papers(browser, page: Path) -> None:
    index, actions = _hover_lonely_dot(browser)
    actions.click().perform()
    deadline = time.monotonic() + 10
    while browser.execute_script("return document.getElementById('neighbours').dataset.paper") != (
        str(index)
    ):
        assert time.monotonic() < deadline, "a click on a dot filled no neighbour panel"
        time.sleep(0.1)
    heading, listed = browser.execute_script(
        "const panel = document.getElementById('neighbours');"
        "return [panel.querySelector('h3').textContent,"
        "        Array.from(panel.querySelectorAll('li a')).map(a => a.textContent)];"
    )
    titles, vectors = _papers(output_of(page))
    assert len(titles) <= report_html.MAP_MAX_PAPERS  # every paper is on this small map
    title = _map_data(browser)["titles"][index]
    assert heading == f"Nearest to: {title}"
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    me = titles.index(title)
    cosines = unit @ unit[me]
    cosines[me] = -np.inf
    expected = [titles[i] for i in np.argsort(-cosines, kind="stable")[: report_html.NEIGHBOURS]]
    assert listed == expected


def _papers(output: str) -> tuple[list[str], np.ndarray]:
    """Titles and embeddings of the canonical papers, straight from the Parquet files."""
    columns = ["record_id", "title", "embedding", "is_canonical"]
    chunks = iter_table(versions.current_root(output), "records", columns)
    table = pa.concat_tables(chunks)
    rows = sorted((r for r in table.to_pylist() if r["is_canonical"]), key=lambda r: r["record_id"])
    return [r["title"] for r in rows], np.array([r["embedding"] for r in rows], dtype=np.float64)


def _visible_rows(browser, table: str) -> list[list[str]]:
    return browser.execute_script(
        f"return Array.from(document.querySelectorAll('#{table} tbody tr'))"
        ".filter(r => !r.hidden).map(r => Array.from(r.cells).map(c => c.textContent))"
    )


def test_the_search_box_filters_a_table(browser) -> None:
    from selenium.webdriver.common.by import By

    table = "t-topics"
    everything = _visible_rows(browser, table)
    assert len(everything) > 3
    box = browser.find_element(By.CSS_SELECTOR, f"input.filter[data-table='{table}']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    word = everything[1][0]  # a tag name
    box.send_keys(word)
    matching = _visible_rows(browser, table)
    assert matching and len(matching) < len(everything)
    assert all(word.lower() in " ".join(row).lower() for row in matching)
    count = browser.find_element(By.ID, f"{table}-count").text
    assert count == f"{len(matching)} of {len(everything)} rows match"
    box.send_keys(" no-such-word-anywhere")
    assert _visible_rows(browser, table) == []
    box.clear()
    browser.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)
    assert _visible_rows(browser, table) == everything


def test_a_header_click_sorts_numbers_and_text(browser) -> None:
    from selenium.webdriver.common.by import By

    table = "t-code_by_tag"
    headers = browser.find_elements(By.CSS_SELECTOR, f"#{table} th")
    names = [h.text for h in headers]
    papers, tag = names.index("papers"), names.index("tag")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", headers[papers])
    headers[papers].click()
    values = [int(row[papers]) for row in _visible_rows(browser, table)]
    assert values == sorted(values) and values != sorted(values, reverse=True)
    assert headers[papers].get_attribute("aria-sort") == "ascending"
    headers[papers].click()
    values = [int(row[papers]) for row in _visible_rows(browser, table)]
    assert values == sorted(values, reverse=True)
    assert headers[papers].get_attribute("aria-sort") == "descending"
    headers[tag].click()
    tags = [row[tag] for row in _visible_rows(browser, table)]
    assert tags == sorted(tags, key=str.lower) or tags == sorted(tags)
    assert headers[papers].get_attribute("aria-sort") is None


def test_today_compares_the_update_with_the_first_run(browser, output: str) -> None:
    from beam_jobs.query import changes

    expected = changes.changes(output)
    assert (expected.version, expected.since) == (2, 1)
    state, heading = browser.execute_script(
        "const s = document.getElementById('today');"
        "return [s.dataset.state, s.querySelector('h2').textContent]"
    )
    assert state == "ok"
    assert heading == "Today: version 2 against version 1"
    for section in expected.sections:
        key = f"t-today-{section.name}"
        shown = _visible_rows(browser, key) if section.rows else []
        assert len(shown) == min(len(section.rows), report_html.TABLE_MAX_ROWS), section.name
    new = next(s for s in expected.sections if s.name == "new")
    assert new.rows, "the sixth day brings new papers"


def test_today_is_a_note_when_the_earlier_snapshot_is_damaged(output: str, tmp_path: Path):
    """The current version reads fine: the page is written, "Today" says what failed."""
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    # version 2 lists version 1's files it did not change: what only version 1 has is its
    # commit record
    record = Path(commits.commit_path(str(copy), 1))
    record.write_bytes(record.read_bytes()[:100])
    page = report_html.render(str(copy))
    today = re.search(r"<section class='today' id='today' data-state='(\w+)'>(.*?)</section>", page)
    assert today and today[1] == "error", today
    assert "could not be worked out" in today[2]
    assert page.count("data-rendered='1'") == 4  # the rest of the page is all there


def test_a_page_without_embeddings_has_notes_not_a_map(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    generate(dumps, GeneratorConfig(records=120, seed=4, records_per_file=40))
    out = tmp_path / "out"
    assert run([f"--input={dumps}/*.txt", f"--output={out}", "--no_embeddings", "--quiet"])
    page = report_html.render(str(out))
    rendered = dict(re.findall(r"id='chart-([\w-]+)' data-rendered='(\d)'", page))
    assert rendered == {
        "topic-share": "0",
        "cluster-sizes": "1",
        "duplicate-kinds": "1",
        "embedding-map": "0",
    }
    assert "No topic tags in this output" in page and "No embeddings in this output" in page
    assert "id='map-data'" not in page and not EXTERNAL.search(_without_plotly(page))
    assert "Today: version 1, no earlier snapshot (everything is new)" in page
