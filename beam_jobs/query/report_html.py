"""``digestflow report DIR --html FILE``: one self-contained HTML page about a run's output.

Why a single file: it is mailed, attached to tickets and opened offline, so nothing on the page
may fetch anything. Charts are rendered by matplotlib (Agg backend, no display needed) into
PNG images inlined as ``data:`` URIs; styles are inline; there is no script. The numbers come
from the same shipped SQL reports as ``digestflow report DIR NAME`` (:mod:`beam_jobs.query.catalog`),
so the page and the command line never disagree.

Charts: topic share over digest dates, cluster-size histogram, duplicate kinds, and a 2-D PCA
map of the paper embeddings coloured by each paper's top topic. Outputs written with
``--no_embeddings`` have no tags and no vectors: those charts are replaced by a note.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_jobs.query import catalog
from beam_jobs.store import versions

MAP_MAX_PAPERS = 20_000  # PCA map: at most this many papers (deterministic: by record_id)
TREND_TOPICS = 8  # topic share chart: the most frequent topics
PAPER_TYPES = ("survey", "benchmark", "has-code")


@dataclass(frozen=True)
class Chart:
    """One figure of the page: an inline PNG, or a note saying why it is missing."""

    key: str
    title: str
    caption: str
    png: bytes | None = None
    note: str = ""
    wide: bool = False  # spans the page's two columns


# ---- data ---------------------------------------------------------------------------------


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    cursor = connection.execute(sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def _report(connection: duckdb.DuckDBPyConnection, name: str) -> tuple[list[str], list[tuple]]:
    return _rows(connection, catalog.report_sql(name))


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of ``vectors`` (rows), via the covariance's
    eigenvectors: cheap for many rows of a few hundred dimensions, deterministic up to sign,
    which is fixed so the largest loading of each component is positive."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    centred = vectors - vectors.mean(axis=0)
    covariance = centred.T @ centred / (len(vectors) - 1)
    values, vectors_ = np.linalg.eigh(covariance)
    components = vectors_[:, np.argsort(values)[::-1][:2]]
    signs = np.sign(components[np.abs(components).argmax(axis=0), range(2)])
    return centred @ (components * np.where(signs == 0, 1, signs))


def top_tag(tag_scores: Sequence[dict] | None, tags: Sequence[str] | None) -> str:
    """A paper's best-scoring topic (the colour on the map); its first tag when unscored."""
    if tag_scores:
        return max(tag_scores, key=lambda s: (s["score"], s["tag"]))["tag"]
    topics = [t for t in tags or [] if t not in PAPER_TYPES]
    return topics[0] if topics else "untagged"


# ---- charts -------------------------------------------------------------------------------


def _figure(width: float = 7.5, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def topic_share_chart(trend: list[tuple]) -> Chart:
    """Lines of the most frequent topics' share of each day's papers (topic_trend report)."""
    key, title = "topic-share", "Topic share over digest dates"
    caption = (
        f"Share of the distinct papers listed on each digest date that carry a topic "
        f"(the {TREND_TOPICS} most frequent topics; report topic_trend)."
    )
    topics = [
        (day, tag, papers, share) for day, tag, papers, share in trend if tag not in PAPER_TYPES
    ]
    if not topics:
        return Chart(
            key,
            title,
            caption,
            note="No topic tags in this output (run with embeddings).",
            wide=True,
        )
    totals: dict[str, int] = {}
    for _, tag, papers, _ in topics:
        totals[tag] = totals.get(tag, 0) + papers
    leaders = sorted(totals, key=lambda t: (-totals[t], t))[:TREND_TOPICS]
    days = sorted({day for day, *_ in topics})
    share = {(day, tag): s for day, tag, _, s in topics}
    plt, fig, ax = _figure(11, 3.6)
    colours = plt.get_cmap("tab10")
    for i, tag in enumerate(leaders):
        ys = [share.get((day, tag), 0.0) for day in days]
        ax.plot(days, ys, marker="o", markersize=3, linewidth=1.6, color=colours(i), label=tag)
    ax.set_ylabel("share of the day's papers")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _date_axis(plt, ax, days)
    return Chart(key, title, caption, _png(plt, fig), wide=True)


def _date_axis(plt, ax, days: list[dt.date]) -> None:
    """Whole days on the x axis (matplotlib's automatic locator picks 12-hour ticks for a
    few days of data)."""
    dates = plt.matplotlib.dates
    if len(days) > 1 and (days[-1] - days[0]).days <= 62:
        step = max(1, ((days[-1] - days[0]).days + 1) // 10)
        ax.xaxis.set_major_locator(dates.DayLocator(interval=step))
        ax.xaxis.set_major_formatter(dates.DateFormatter("%b %d"))
    else:
        locator = dates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))


SIZE_BUCKETS: tuple[tuple[int, int], ...] = (
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 4),
    (5, 5),
    (6, 10),
    (11, 20),
    (21, 50),
    (51, 100),
    (101, 1000),
    (1001, 10**12),
)


def size_histogram(sizes: Sequence[int]) -> list[tuple[str, int]]:
    """Papers per cluster-size bucket (1, 2, ... 5, 6-10, ..., >1000), up to the largest
    bucket in use: readable bars even when one paper has thousands of copies."""
    counts = [sum(1 for s in sizes if low <= s <= high) for low, high in SIZE_BUCKETS]
    last = max((i for i, n in enumerate(counts) if n), default=-1)
    labels = [
        str(low) if low == high else f">{low - 1}" if high == 10**12 else f"{low}-{high}"
        for low, high in SIZE_BUCKETS
    ]
    return list(zip(labels, counts, strict=True))[: last + 1]


def cluster_size_chart(sizes: list[int]) -> Chart:
    """How many papers were listed once, twice, ... (clusters.size), log-scaled counts."""
    key, title = "cluster-sizes", "Cluster sizes"
    caption = "Papers by the number of records (listings and versions) in their cluster."
    buckets = size_histogram(sizes)
    if not buckets:
        return Chart(key, title, caption, note="No clusters in this output.")
    plt, fig, ax = _figure(6, 3.4)
    bars = ax.bar([label for label, _ in buckets], [n for _, n in buckets], color="#4C72B0")
    ax.bar_label(bars, labels=[f"{n:,}" if n else "" for _, n in buckets], padding=2, fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("records in the cluster")
    ax.set_ylabel("papers (log scale)")
    return Chart(key, title, caption, _png(plt, fig))


def duplicate_kinds_chart(kinds: list[tuple[str, int]]) -> Chart:
    """Canonical records, exact copies, and near copies by what changed (near_duplicates)."""
    key, title = "duplicate-kinds", "Duplicate kinds"
    caption = (
        "Every record: the canonical of its paper, an exact copy (same normalized text), or "
        "another version (near copy, or semantic match of a revision), split by what changed "
        "(report near_duplicates)."
    )
    if not kinds:
        return Chart(key, title, caption, note="No records in this output.")
    plt, fig, ax = _figure(6, 0.4 * len(kinds) + 1.2)
    labels = [label for label, _ in kinds][::-1]
    values = [value for _, value in kinds][::-1]
    bars = ax.barh(labels, values, color=[_kind_colour(label) for label in labels])
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("records")
    return Chart(key, title, caption, _png(plt, fig))


KIND_COLOURS = {"canonical": "#8C8C8C", "exact copy": "#55A868", "near": "#C44E52"}


def _kind_colour(label: str) -> str:
    return KIND_COLOURS.get(label, KIND_COLOURS.get(label.split(":")[0], "#8172B3"))


def embedding_map_chart(points: np.ndarray, labels: list[str]) -> Chart:
    """The 2-D PCA projection of the papers' embeddings, one colour per top topic."""
    key, title = "embedding-map", "Map of the papers (PCA of the embeddings)"
    caption = (
        "Each dot is a distinct paper, placed by the first two principal components of its "
        "embedding and coloured by its best-scoring topic. Nearby dots are similar in meaning."
    )
    if len(points) < 2:
        return Chart(
            key,
            title,
            caption,
            note="No embeddings in this output (run with embeddings).",
            wide=True,
        )
    plt, fig, ax = _figure(11, 6)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    order = sorted(counts, key=lambda t: (-counts[t], t))
    colours = plt.get_cmap("tab20")
    marker_size = 14 if len(points) <= 2000 else 4
    names = np.asarray(labels)
    for i, label in enumerate(order):
        mask = names == label
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            s=marker_size,
            alpha=0.8,
            color=colours(i % 20),
            label=f"{label} ({counts[label]})",
            linewidths=0,
        )
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(
        fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=1.5
    )
    return Chart(key, title, caption, _png(plt, fig), wide=True)


# ---- assembling ---------------------------------------------------------------------------


def duplicate_kinds(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """(label, records): canonical, exact copy, then each other kind split by what changed."""
    _, rows = _rows(
        connection,
        "SELECT coalesce(dup_kind, 'canonical') AS kind, count(*) FROM records GROUP BY kind",
    )
    counts = dict(rows)
    kinds = [("canonical", counts.get("canonical", 0)), ("exact copy", counts.get("exact", 0))]
    columns, versions = _report(connection, "near_duplicates")
    kind, what = columns.index("dup_kind"), columns.index("what_changed")
    changed: dict[str, int] = {}
    for row in versions:
        label = f"{row[kind]}: {row[what]}"
        changed[label] = changed.get(label, 0) + 1
    kinds += sorted(changed.items(), key=lambda kv: (kv[0].split(":")[0] != "near", -kv[1], kv[0]))
    return [(label, n) for label, n in kinds if n]


def embedding_points(connection: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, list[str]]:
    table = connection.sql(
        "SELECT embedding, tag_scores, tags FROM papers WHERE embedding IS NOT NULL "
        f"ORDER BY record_id LIMIT {MAP_MAX_PAPERS}"
    ).to_arrow_table()
    if table.num_rows == 0:
        return np.zeros((0, 2)), []
    column = table.column("embedding").combine_chunks()
    vectors = column.values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
    labels = [
        top_tag(scores, tags)
        for scores, tags in zip(
            table.column("tag_scores").to_pylist(), table.column("tags").to_pylist(), strict=True
        )
    ]
    return pca_2d(vectors.astype(np.float64)), labels


def build_charts(connection: duckdb.DuckDBPyConnection) -> list[Chart]:
    _, trend = _report(connection, "topic_trend")
    _, sizes = _rows(connection, "SELECT size FROM clusters")
    points, labels = embedding_points(connection)
    return [
        topic_share_chart(trend),
        cluster_size_chart([s for (s,) in sizes]),
        duplicate_kinds_chart(duplicate_kinds(connection)),
        embedding_map_chart(points, labels),
    ]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def _td(value: object) -> str:
    """Short values (numbers, dates, ids) never wrap; titles do."""
    text = _cell(value)
    return f"<td class='n'>{text}</td>" if len(text) <= 24 else f"<td>{text}</td>"


def html_table(columns: list[str], rows: list[tuple], limit: int = 15) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows[:limit])
    more = (
        f"<p class='more'>{len(rows) - limit} more rows not shown.</p>" if len(rows) > limit else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def chart_html(chart: Chart) -> str:
    if chart.png is None:
        inner = f"<p class='note'>{html.escape(chart.note)}</p>"
    else:
        data = base64.b64encode(chart.png).decode("ascii")
        inner = f"<img alt='{html.escape(chart.title)}' src='data:image/png;base64,{data}'>"
    return (
        f"<figure class='chart{' wide' if chart.wide else ''}' id='chart-{chart.key}' "
        f"data-rendered='{int(chart.png is not None)}'>"
        f"<h2>{html.escape(chart.title)}</h2>{inner}"
        f"<figcaption>{html.escape(chart.caption)}</figcaption></figure>"
    )


def overview_cards(columns: list[str], rows: list[tuple]) -> str:
    """The overview report as number cards (share shown as a percentage where it has one)."""
    cards = []
    for metric, value, share in rows:
        extra = (
            f"<span class='share'>{share:.1%}</span>"
            if share is not None and metric != "records"
            else ""
        )
        cards.append(
            f"<div class='card' data-metric='{html.escape(metric)}'><div class='value'>{value:,}"
            f"</div><div class='metric'>{html.escape(metric.replace('_', ' '))}</div>{extra}</div>"
        )
    return "<div class='cards' id='overview'>" + "".join(cards) + "</div>"


def _run_summary(root: str) -> dict:
    try:
        with FileSystems.open(FileSystems.join(root, "run_summary.json")) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 16px; margin: 8px 0; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 24px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card .value { font-size: 20px; font-weight: 600; } .card .metric { color: #555; font-size: 12px; }
.card .share { color: #888; font-size: 12px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
figure.wide { grid-column: 1 / -1; }
figure.chart { margin: 0; border: 1px solid #eee; border-radius: 6px; padding: 10px; }
figure.chart img { max-width: 100%; height: auto; display: block; }
figcaption { color: #666; font-size: 12px; } .note { color: #a05a00; font-style: italic; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 18px; }
th, td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; } td.n { white-space: nowrap; } .more { color: #888; font-size: 12px; }
section.tables { margin-top: 24px; }
"""


def render(output: str) -> str:
    """The whole page as a string (no I/O besides reading ``output``)."""
    connection = catalog.connect(output)
    try:
        overview = _report(connection, "overview")
        charts = build_charts(connection)
        tables = [
            (name, catalog.report_summary(name), _report(connection, name))
            for name in ("repeats", "topics", "code_by_tag", "near_duplicates")
        ]
    finally:
        connection.close()
    root = versions.current_root(output)
    summary = _run_summary(root)
    ran = f" · run took {summary['wall_seconds']} s" if "wall_seconds" in summary else ""
    figures = "".join(chart_html(chart) for chart in charts)
    sections = "".join(
        f"<h2>{html.escape(name)}</h2><p class='sub'>{html.escape(doc)}</p>{html_table(*result)}"
        for name, doc, result in tables
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>digestflow report: {html.escape(os.path.basename(os.path.abspath(output)))}</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>digestflow report</h1>"
        f"<p class='sub'>{html.escape(catalog.absolute_path(root))} · generated "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}{html.escape(ran)}</p>"
        f"{overview_cards(*overview)}"
        f"<div class='grid'>{figures}</div>"
        f"<section class='tables'>{sections}</section>"
        "</body></html>"
    )


def write_report(output: str, path: str) -> str:
    """Write the page for ``output`` to ``path``; returns the path written."""
    page = render(output)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path
