"""What changed in an update: ``digestflow report DIR changes [--since VERSION]``.

Four sections, each a shipped SQL report (``beam_jobs/query/reports/changes_*.sql``) run over
the views of the current version plus ``previous_records``, ``previous_clusters`` and
``previous_papers``, which :func:`beam_jobs.query.catalog.connect_changes` makes over the
snapshot compared against (read through its commit record and checked like the current one).
Without an earlier snapshot (a first run) those views are empty: every paper is new.

The HTML page's "Today" section and the CLI both take :func:`changes`; neither runs SQL of
its own, so the page, the CLI and a user pasting the SQL see the same answers.
"""

from __future__ import annotations

from typing import NamedTuple

from beam_jobs.query import catalog


class Section(NamedTuple):
    name: str  # "new" | "revised" | "again" | "topics"
    title: str  # heading, e.g. "New papers"
    doc: str  # one line: what the section answers
    columns: list[str]
    rows: list[tuple]
    note: str = ""  # e.g. "this output has no tags (built with --no_embeddings)"


class Changes(NamedTuple):
    version: int  # the current snapshot
    since: int | None  # the snapshot compared against; None when there is none
    sections: list[Section]


# section name -> (report file, heading), in the order they are printed
SECTIONS: dict[str, tuple[str, str]] = {
    "new": ("changes_new", "New papers"),
    "revised": ("changes_revised", "New versions of known papers"),
    "again": ("changes_again", "Papers listed again"),
    "topics": ("changes_topics", "Topic share"),
}
NO_TAGS = "this output has no tags (built with --no_embeddings)"


def changes(output: str, since: int | None = None) -> Changes:
    """What the current version of ``output`` adds to version ``since`` (default: the
    previous snapshot, if one is kept). A ``since`` that is not an earlier kept version, or
    whose files are damaged, raises :class:`~beam_jobs.errors.UserError` (a
    :class:`~beam_jobs.store.versions.DamagedOutput` for damage) naming the kept versions."""
    connection, compared = catalog.connect_changes(output, since)
    try:
        tagged = bool(
            connection.execute("SELECT 1 FROM papers WHERE tags IS NOT NULL LIMIT 1").fetchall()
        )
        sections = []
        for name, (report, title) in SECTIONS.items():
            columns, rows = catalog.run_sql(connection, catalog.report_sql(report))
            note = NO_TAGS if name == "topics" and not tagged else ""
            sections.append(
                Section(name, title, catalog.report_summary(report), columns, rows, note)
            )
    finally:
        connection.close()
    return Changes(compared.version, compared.since, sections)


def report_names() -> list[str]:
    """The shipped reports :func:`changes` is made of, in section order."""
    return [report for report, _ in SECTIONS.values()]
