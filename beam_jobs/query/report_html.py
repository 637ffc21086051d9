"""``digestflow report DIR --html FILE``: one self-contained, interactive HTML page about a
run's output.

Why a single file: it is mailed, attached to tickets and opened offline, so nothing on the page
may fetch anything. Charts are Plotly figures (built in Python with ``plotly.graph_objects``,
embedded as JSON and drawn by the plotly.js bundle that ships with the ``plotly`` package,
inlined once); styles and the page's small script (``page/page.js``: draw the figures, the
map's neighbour panel, table search and sort) are inlined too. The numbers come from the same
shipped SQL reports as ``digestflow report DIR NAME`` (:mod:`beam_jobs.query.catalog`) and,
for "Today", from :func:`beam_jobs.query.changes.changes`, so the page and the command line
never disagree.

The page, top to bottom:

* **Today**: what the current version adds to the previous snapshot (new papers, new versions
  of known papers, papers listed again, topic share), one searchable table per section. A
  first run has no earlier snapshot: everything is new. When the comparison itself fails (the
  earlier snapshot is damaged or gone: a :class:`~beam_jobs.errors.UserError`, an ``OSError``
  or a DuckDB error) the section shows that error as a note and the rest of the page is
  written anyway: the current version was read successfully, only "what changed" is unknown.
  A damaged *current* version still fails the command (nothing would be right on the page).
* KPI cards (the overview report).
* Charts: the top topics' share per digest date as small multiples (counts on hover), cluster
  sizes, duplicate kinds, and the **paper map**: the 2-D PCA projection of the embeddings as a
  WebGL scatter, coloured by top topic, with title, digest dates and tags on hover; a click
  lists the paper's nearest papers (cosine, top :data:`NEIGHBOURS`, precomputed in numpy among
  the plotted papers). The map plots at most :data:`MAP_MAX_PAPERS` papers, the ones with the
  smallest ``record_id`` (a hash of file and slot: an even spread, stable across runs), and the
  page says so, so it stays light (a few MB, most of it plotly.js) at any corpus size.
* Tables of the shipped reports (repeats, topics, code by tag, near duplicates), at most
  :data:`TABLE_MAX_ROWS` rows each, with a search box (every word must occur in the row) and
  sortable columns (click a header).

Outputs written with ``--no_embeddings`` have no tags and no vectors: the topic chart and the
map are replaced by a note.
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import duckdb
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.query import catalog
from beam_jobs.store import versions

MAP_MAX_PAPERS = 5_000  # paper map: at most this many papers (deterministic: by record_id)
NEIGHBOURS = 8  # nearest papers listed on a click on the map
TREND_TOPICS = 12  # topic small multiples: the most frequent topics
TREND_COLUMNS = 4
TABLE_MAX_ROWS = 500  # rows of a report embedded in the page (searchable, sortable)
PAPER_TYPES = ("survey", "benchmark", "has-code")
TABLE_REPORTS = ("repeats", "topics", "code_by_tag", "near_duplicates")


@dataclass(frozen=True)
class Chart:
    """One figure of the page: a Plotly figure (its JSON), or a note saying why it is
    missing; ``extra`` is HTML placed under the figure (the map's neighbour panel)."""

    key: str
    title: str
    caption: str
    figure: str | None = None
    note: str = ""
    wide: bool = False  # spans the page's two columns
    extra: str = ""
    data: str = ""  # JSON the page's script reads (the map's titles and neighbours)


@dataclass(frozen=True)
class MapPoints:
    """The papers on the map: 2-D positions, labels for hover, their nearest papers."""

    xy: np.ndarray  # (n, 2)
    titles: list[str]
    hover: list[str]
    topics: list[str]
    neighbours: np.ndarray  # (n, k) indices into the points
    cosines: np.ndarray  # (n, k)
    total: int  # papers with an embedding in the output


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


def nearest(vectors: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by cosine, best first (ties: lower index first),
    and those cosines: (n, k) indices and (n, k) cosines, k capped at n - 1. Computed in
    chunks of rows, so memory is chunk × n, not n × n."""
    n = len(vectors)
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    cosines = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        block = unit[start : start + chunk] @ unit.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf  # never a paper's own neighbour
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        order = np.lexsort((top, -np.take_along_axis(block, top, axis=1)), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        indices[start : start + chunk] = top
        cosines[start : start + chunk] = np.take_along_axis(block, top, axis=1)
    return indices, cosines


def top_tag(tag_scores: Sequence[dict] | None, tags: Sequence[str] | None) -> str:
    """A paper's best-scoring topic (the colour on the map); its first tag when unscored."""
    if tag_scores:
        return max(tag_scores, key=lambda s: (s["score"], s["tag"]))["tag"]
    topics = [t for t in tags or [] if t not in PAPER_TYPES]
    return topics[0] if topics else "untagged"


def date_list(dates: Sequence[dt.date] | None, shown: int = 6) -> str:
    """``Mar 13, Mar 14, 2026`` or ``Mar 01, ... Mar 06 (+9 more, to Apr 02, 2026)``."""
    days = sorted(d for d in dates or [] if d is not None)
    if not days:
        return "no digest date"
    year = f", {days[-1].year}"
    if len(days) <= shown:
        return ", ".join(d.strftime("%b %d") for d in days) + year
    head = ", ".join(d.strftime("%b %d") for d in days[: shown - 1])
    return f"{head} … (+{len(days) - shown + 1} more, to {days[-1].strftime('%b %d')}){year}"


def map_points(connection: duckdb.DuckDBPyConnection, limit: int = MAP_MAX_PAPERS) -> MapPoints:
    """The papers with an embedding and the smallest record ids, at most ``limit``: their PCA
    positions, hover labels (title, digest dates of every listing, tags) and neighbours."""
    [(total,)] = connection.execute(
        "SELECT count(*) FROM papers WHERE embedding IS NOT NULL"
    ).fetchall()
    table = connection.sql(
        "WITH sample AS (SELECT record_id, cluster_id, title, embedding, tags, tag_scores, "
        "cluster_size FROM papers WHERE embedding IS NOT NULL "
        f"ORDER BY record_id LIMIT {int(limit)}), "
        "days AS (SELECT cluster_id, list(DISTINCT digest_date) AS dates FROM records "
        "WHERE cluster_id IN (SELECT cluster_id FROM sample) GROUP BY cluster_id) "
        "SELECT s.title, s.embedding, s.tags, s.tag_scores, s.cluster_size, d.dates "
        "FROM sample s LEFT JOIN days d USING (cluster_id) ORDER BY s.record_id"
    ).to_arrow_table()
    if table.num_rows == 0:
        empty = np.zeros((0, 2))
        return MapPoints(empty, [], [], [], empty.astype(np.int64), empty, int(total))
    column = table.column("embedding").combine_chunks()
    vectors = column.values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
    titles = table.column("title").to_pylist()
    tags = table.column("tags").to_pylist()
    topics = [
        top_tag(scores, t)
        for scores, t in zip(table.column("tag_scores").to_pylist(), tags, strict=True)
    ]
    hover = [
        f"<b>{html.escape(_wrap(title))}</b><br>{html.escape(date_list(days))}"
        f" · {size} listing{'s' if size != 1 else ''}<br>"
        f"tags: {html.escape(', '.join(paper_tags or []) or 'none')}"
        for title, days, size, paper_tags in zip(
            titles,
            table.column("dates").to_pylist(),
            table.column("cluster_size").to_pylist(),
            tags,
            strict=True,
        )
    ]
    neighbours, cosines = nearest(vectors, NEIGHBOURS)
    return MapPoints(
        pca_2d(vectors.astype(np.float64)),
        titles,
        hover,
        topics,
        neighbours,
        cosines,
        int(total),
    )


def _wrap(text: str, width: int = 80) -> str:
    """Long titles on hover broken at spaces (Plotly takes <br>, not CSS wrapping)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


# ---- charts -------------------------------------------------------------------------------


@cache
def _template():
    import plotly.graph_objects as go

    return go.layout.Template(
        layout={
            "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "colorway": list(COLOURS),
            "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
            "xaxis": {"gridcolor": "#eee", "linecolor": "#bbb", "zeroline": False},
            "yaxis": {"gridcolor": "#eee", "linecolor": "#bbb", "zeroline": False},
            "hoverlabel": {"align": "left"},
        }
    )


COLOURS = (  # tab20-like: distinct for up to 20 topics
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


def figure_json(figure, modebar: bool = False) -> str:
    """The figure's JSON (``data``, ``layout``) plus the ``config`` the page's script passes
    to ``Plotly.newPlot``: the mode bar only where zooming helps (the map)."""
    payload = json.loads(figure.to_json())
    payload["config"] = {"displaylogo": False, "responsive": True, "displayModeBar": modebar}
    return json.dumps(payload, separators=(",", ":"))


def _figure(**layout):
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.update_layout(template=_template(), **layout)
    return figure


def topic_share_chart(trend: list[tuple]) -> Chart:
    """The most frequent topics' share of each day's papers (topic_trend report), one small
    panel per topic on shared axes; papers and share on hover."""
    key, title = "topic-share", "Topic share over digest dates"
    caption = (
        f"Share of the distinct papers listed on each digest date that carry a topic, one "
        f"panel per topic (the {TREND_TOPICS} most frequent; same scales; hover for the "
        f"day's count; report topic_trend)."
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
    from plotly.subplots import make_subplots

    totals: dict[str, int] = {}
    for _, tag, papers, _ in topics:
        totals[tag] = totals.get(tag, 0) + papers
    leaders = sorted(totals, key=lambda t: (-totals[t], t))[:TREND_TOPICS]
    days = sorted({day for day, *_ in topics})
    cells = {(day, tag): (papers, share) for day, tag, papers, share in topics}
    columns = min(TREND_COLUMNS, len(leaders))
    rows = -(-len(leaders) // columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=[f"{tag} ({totals[tag]:,})" for tag in leaders],
        horizontal_spacing=0.03,
        vertical_spacing=0.1,
    )
    for i, tag in enumerate(leaders):
        counts = [cells.get((day, tag), (0, 0.0)) for day in days]
        figure.add_scatter(
            x=[day.isoformat() for day in days],
            y=[share for _, share in counts],
            customdata=[papers for papers, _ in counts],
            mode="lines+markers" if len(days) <= 31 else "lines",
            marker={"size": 4},
            line={"width": 1.6, "color": COLOURS[i % len(COLOURS)]},
            fill="tozeroy",
            name=tag,
            hovertemplate=f"{html.escape(tag)}<br>%{{x|%b %d, %Y}}: %{{customdata:,}} papers"
            "<br>%{y:.1%} of the day's papers<extra></extra>",
            row=i // columns + 1,
            col=i % columns + 1,
        )
    figure.update_layout(
        template=_template(), showlegend=False, height=150 * rows + 60, hovermode="closest"
    )
    figure.update_yaxes(tickformat=".0%", rangemode="tozero")
    figure.update_xaxes(tickformat="%b %d", **_day_ticks(days))
    figure.update_annotations(font_size=12)
    return Chart(key, title, caption, figure_json(figure), wide=True)


def _day_ticks(days: list[dt.date]) -> dict:
    """Whole days on a date axis of up to two months (Plotly's automatic ticks fall on
    12-hour steps for a few days of data); automatic ticks beyond that."""
    span = (days[-1] - days[0]).days if days else 0
    if span > 62:
        return {}
    return {"tick0": days[0].isoformat(), "dtick": 86_400_000 * max(1, (span + 1) // 6)}


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
    values = np.asarray(sizes, dtype=np.int64)
    counts = [int(((values >= low) & (values <= high)).sum()) for low, high in SIZE_BUCKETS]
    last = max((i for i, n in enumerate(counts) if n), default=-1)
    labels = [
        str(low) if low == high else f">{low - 1}" if high == 10**12 else f"{low}-{high}"
        for low, high in SIZE_BUCKETS
    ]
    return list(zip(labels, counts, strict=True))[: last + 1]


def cluster_size_chart(sizes: Sequence[int]) -> Chart:
    """How many papers were listed once, twice, ... (clusters.size), log-scaled counts."""
    key, title = "cluster-sizes", "Cluster sizes"
    caption = "Papers by the number of records (listings and versions) in their cluster."
    buckets = size_histogram(sizes)
    if not buckets:
        return Chart(key, title, caption, note="No clusters in this output.")
    figure = _figure(
        height=320,
        xaxis={"title": "records in the cluster", "type": "category"},
        yaxis={"title": "papers (log scale)", "type": "log"},
    )
    figure.add_bar(
        x=[label for label, _ in buckets],
        y=[n for _, n in buckets],
        text=[f"{n:,}" if n else "" for _, n in buckets],
        textposition="outside",
        cliponaxis=False,
        marker_color="#4C72B0",
        hovertemplate="%{x} records: %{y:,} papers<extra></extra>",
    )
    return Chart(key, title, caption, figure_json(figure))


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
    labels = [label for label, _ in kinds][::-1]
    values = [value for _, value in kinds][::-1]
    figure = _figure(
        height=max(220, 26 * len(kinds) + 80),
        xaxis={"title": "records"},
        margin={"l": 170, "r": 40},
    )
    figure.add_bar(
        x=values,
        y=labels,
        orientation="h",
        text=[f"{v:,}" for v in values],
        textposition="outside",
        cliponaxis=False,
        marker_color=[_kind_colour(label) for label in labels],
        hovertemplate="%{y}: %{x:,} records<extra></extra>",
    )
    return Chart(key, title, caption, figure_json(figure))


KIND_COLOURS = {"canonical": "#8C8C8C", "exact copy": "#55A868", "near": "#C44E52"}


def _kind_colour(label: str) -> str:
    return KIND_COLOURS.get(label, KIND_COLOURS.get(label.split(":")[0], "#8172B3"))


def embedding_map_chart(points: MapPoints) -> Chart:
    """The 2-D PCA projection of the papers' embeddings, one colour per top topic; hover
    shows a paper, a click lists its nearest papers (the page's script, from ``data``)."""
    key, title = "embedding-map", "Map of the papers (PCA of the embeddings)"
    shown = len(points.titles)
    if shown < 2:
        return Chart(
            key,
            title,
            "Each dot would be a distinct paper, placed by its embedding.",
            note="No embeddings in this output (run with embeddings).",
            wide=True,
        )
    sample = (
        f"Showing all {shown:,} papers."
        if shown == points.total
        else f"Showing {shown:,} of {points.total:,} papers, sampled by record_id (the "
        f"{shown:,} smallest: a hash of file and slot, so an even spread that stays the same "
        "from run to run)."
    )
    caption = (
        f"{sample} Each dot is a distinct paper, placed by the first two principal components "
        "of its embedding and coloured by its best-scoring topic; nearby dots are similar in "
        f"meaning. Hover for title, digest dates and tags; click a dot for its {NEIGHBOURS} "
        "nearest papers by cosine among the papers on the map (the whole corpus: "
        'digestflow similar DIR "title").'
    )
    counts: dict[str, int] = {}
    for label in points.topics:
        counts[label] = counts.get(label, 0) + 1
    order = sorted(counts, key=lambda t: (-counts[t], t))
    names = np.asarray(points.topics)
    hover = np.asarray(points.hover, dtype=object)
    xy = points.xy.astype(np.float32)
    figure = _figure(
        height=600,
        hovermode="closest",
        xaxis={"title": "PC 1"},
        yaxis={"title": "PC 2"},
        legend={"itemsizing": "constant", "font": {"size": 11}},
        margin={"r": 8, "t": 8},
    )
    for i, label in enumerate(order):
        (members,) = np.nonzero(names == label)
        figure.add_scattergl(
            x=xy[members, 0],
            y=xy[members, 1],
            mode="markers",
            name=f"{label} ({counts[label]:,})",
            marker={
                "size": 7 if shown <= 2000 else 5,
                "color": COLOURS[i % len(COLOURS)],
                "opacity": 0.8,
            },
            customdata=members.astype(np.int32),
            hovertext=[t.replace("\n", "<br>") for t in hover[members]],
            hoverinfo="text",
        )
    data = {
        "titles": points.titles,
        "neighbours": points.neighbours.tolist(),
        "cosines": np.round(points.cosines.astype(np.float64), 3).tolist(),
    }
    panel = (
        "<div id='neighbours' aria-live='polite'><p class='sub'>Click a dot to list its "
        "nearest papers.</p></div>"
    )
    return Chart(
        key,
        title,
        caption,
        figure_json(figure, modebar=True),
        wide=True,
        extra=panel,
        data=json.dumps(data),
    )


# ---- assembling ---------------------------------------------------------------------------


def duplicate_kinds(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """(label, records): canonical, exact copy, then each other kind split by what changed."""
    _, rows = _rows(
        connection,
        "SELECT coalesce(dup_kind, 'canonical') AS kind, count(*) FROM records GROUP BY kind",
    )
    counts = dict(rows)
    kinds = [("canonical", counts.get("canonical", 0)), ("exact copy", counts.get("exact", 0))]
    columns, versions_ = _report(connection, "near_duplicates")
    kind, what = columns.index("dup_kind"), columns.index("what_changed")
    changed: dict[str, int] = {}
    for row in versions_:
        label = f"{row[kind]}: {row[what]}"
        changed[label] = changed.get(label, 0) + 1
    kinds += sorted(changed.items(), key=lambda kv: (kv[0].split(":")[0] != "near", -kv[1], kv[0]))
    return [(label, n) for label, n in kinds if n]


def build_charts(connection: duckdb.DuckDBPyConnection) -> list[Chart]:
    _, trend = _report(connection, "topic_trend")
    sizes = connection.execute("SELECT size FROM clusters").fetchnumpy()["size"]
    return [
        topic_share_chart(trend),
        cluster_size_chart(sizes),
        duplicate_kinds_chart(duplicate_kinds(connection)),
        embedding_map_chart(map_points(connection)),
    ]


def _json_script(payload: str, **attributes: str) -> str:
    """JSON inside a <script> element: "</" can never close it early (``<\\/`` is the same
    JSON string)."""
    attrs = "".join(f" {name.replace('_', '-')}='{value}'" for name, value in attributes.items())
    body = payload.replace("</", "<\\/")
    return f"<script type='application/json'{attrs}>{body}</script>"


def _td(value: object) -> str:
    """Numbers carry their value for sorting (data-v); short values (numbers, dates, ids)
    never wrap; titles do."""
    if value is None:
        return "<td class='n'></td>"
    if isinstance(value, bool):
        return f"<td class='n'>{value}</td>"
    if isinstance(value, int | np.integer):
        return f"<td class='n' data-v='{int(value)}'>{int(value)}</td>"
    if isinstance(value, float | np.floating | decimal.Decimal):
        number = float(value)
        return f"<td class='n' data-v='{number!r}'>{number:.4g}</td>"
    if isinstance(value, list | tuple):
        text = html.escape(", ".join(str(v) for v in value))
    else:
        text = html.escape(str(value))
    return f"<td class='n'>{text}</td>" if len(text) <= 24 else f"<td>{text}</td>"


def html_table(key: str, columns: list[str], rows: list[tuple], limit: int = TABLE_MAX_ROWS) -> str:
    """A table with a search box over its rows and sortable headers (the page's script)."""
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows[:limit])
    more = (
        f"<p class='more'>{len(rows) - limit:,} more rows not in the page (the first "
        f"{limit:,} are; the command line has them all).</p>"
        if len(rows) > limit
        else ""
    )
    tools = (
        f"<div class='table-tools'><input type='search' class='filter' data-table='t-{key}' "
        f"placeholder='search {min(len(rows), limit):,} rows' aria-label='search {key}'>"
        f"<span class='count' id='t-{key}-count'></span></div>"
        if rows
        else "<p class='sub'>No rows.</p>"
    )
    table = (
        f"<div class='scroll'><table class='data' id='t-{key}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
        if rows
        else ""
    )
    return f"{tools}{table}{more}"


def chart_html(chart: Chart) -> str:
    if chart.figure is None:
        inner = f"<p class='note'>{html.escape(chart.note)}</p>"
    else:
        inner = (
            f"<div class='plot' id='plot-{chart.key}'></div>"
            + _json_script(chart.figure, **{"class": "figure", "data_target": f"plot-{chart.key}"})
            + chart.extra
            + (_json_script(chart.data, id="map-data") if chart.data else "")
        )
    return (
        f"<figure class='chart{' wide' if chart.wide else ''}' id='chart-{chart.key}' "
        f"data-rendered='{int(chart.figure is not None)}'>"
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


def today_html(output: str) -> str:
    """The "Today" section: :func:`beam_jobs.query.changes.changes` against the previous
    snapshot, one table per section; a failed comparison becomes a note (module docstring)."""
    from beam_jobs.query import changes as changes_module

    try:
        result = changes_module.changes(output)
    except (UserError, OSError, duckdb.Error) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            "<section class='today' id='today' data-state='error'><h2>Today</h2>"
            "<p class='note'>What changed since the previous snapshot could not be worked "
            f"out: {html.escape(reason)}. The rest of the page describes the current "
            "version.</p></section>"
        )
    if result.since is None:
        heading = f"Today: version {result.version}, no earlier snapshot (everything is new)"
    else:
        heading = f"Today: version {result.version} against version {result.since}"
    parts = [f"<section class='today' id='today' data-state='ok'><h2>{html.escape(heading)}</h2>"]
    for section in result.sections:
        note = f"<p class='note'>{html.escape(section.note)}</p>" if section.note else ""
        parts.append(
            f"<h3>{html.escape(section.title)} ({len(section.rows):,})</h3>"
            f"<p class='sub'>{html.escape(section.doc)}</p>{note}"
            + html_table(f"today-{section.name}", section.columns, section.rows)
        )
    return "".join(parts) + "</section>"


def _run_summary(root: str) -> dict:
    try:
        with FileSystems.open(FileSystems.join(root, "run_summary.json")) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


def _asset(name: str) -> str:
    return resources.files("beam_jobs.query").joinpath("page", name).read_text("utf-8")


@cache
def plotly_js() -> str:
    """The plotly.js bundle of the installed ``plotly`` package (no CDN, no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def render(output: str) -> str:
    """The whole page as a string (no I/O besides reading ``output``)."""
    connection = catalog.connect(output)
    try:
        overview = _report(connection, "overview")
        charts = build_charts(connection)
        tables = [
            (name, catalog.report_summary(name), _report(connection, name))
            for name in TABLE_REPORTS
        ]
    finally:
        connection.close()
    today = today_html(output)  # after the current version was read: see the docstring
    root = versions.current_root(output)
    summary = _run_summary(root)
    ran = f" · run took {summary['wall_seconds']} s" if "wall_seconds" in summary else ""
    figures = "".join(chart_html(chart) for chart in charts)
    sections = "".join(
        f"<h2 id='report-{name}'>{html.escape(name)}</h2><p class='sub'>{html.escape(doc)}</p>"
        f"{html_table(name, *result)}"
        for name, doc, result in tables
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>digestflow report: {html.escape(os.path.basename(os.path.abspath(output)))}</title>"
        f"<style>{_asset('page.css')}</style></head><body>"
        "<h1>digestflow report</h1>"
        f"<p class='sub'>{html.escape(catalog.absolute_path(root))} · generated "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}{html.escape(ran)}</p>"
        f"{today}"
        f"{overview_cards(*overview)}"
        f"<div class='grid'>{figures}</div>"
        f"<section class='tables'>{sections}</section>"
        f"<script>{plotly_js()}</script>"
        f"<script>{_asset('page.js')}</script>"
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
