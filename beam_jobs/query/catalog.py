"""DuckDB over a digestflow output directory: one view per table, plus ``papers``, and the
named reports (documented SQL files shipped in ``beam_jobs/query/reports/``).

Everything that knows where a table lives or what a view means is here, so the CLI, the HTML
report and a user's own notebook (``digestflow catalog DIR --sql``) all see the same views.
"""

from __future__ import annotations

import os
from importlib import resources

import duckdb
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.store import versions
from beam_jobs.store.tables import table_files, table_glob
from transforms.schema import TABLES


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def stored_embedding_dim(output: str) -> int | None:
    """The fixed size of the records' embedding column of the current version."""
    return _embedding_dim_at(versions.current_root(output))


def _embedding_dim_at(root: str) -> int | None:
    """Read from a Parquet footer (local or gs://)."""
    files = table_files(root, "records")
    if not files:
        return None
    with FileSystems.open(files[0]) as fh:
        schema = pq.read_schema(fh)
    if "embedding" not in schema.names:
        return None
    return getattr(schema.field("embedding").type, "list_size", None)


def view_statements(output: str) -> list[str]:
    """CREATE VIEW statements, pasteable into the plain ``duckdb`` CLI or a notebook.

    The manifest is read once, so every view reads the same version even while an update
    publishes a new one. DuckDB reads a Parquet fixed-size list as FLOAT[]; the records
    view casts the embedding to FLOAT[dim] so ``array_cosine_similarity`` works on it. A
    table an output has no files for (written before that table existed) gets no view,
    rather than failing every query.
    """
    root = versions.current_root(output)

    def source(name: str) -> str:
        return f"read_parquet({_quote(absolute_path(table_glob(root, name)))})"

    dim = _embedding_dim_at(root)
    cast = f" REPLACE (embedding::FLOAT[{dim}] AS embedding)" if dim else ""
    statements = [f"CREATE OR REPLACE VIEW records AS SELECT *{cast} FROM {source('records')}"]
    statements += [
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source(name)}"
        for name in TABLES
        if name != "records" and table_files(root, name)
    ]
    statements.append(
        "CREATE OR REPLACE VIEW papers AS SELECT r.*, c.size AS cluster_size, "
        "c.first_digest_date AS first_seen, c.last_digest_date AS last_seen "
        "FROM records r JOIN clusters c USING (cluster_id) WHERE r.is_canonical"
    )
    return statements


def connect(output: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``output`` loaded."""
    statements = view_statements(output)  # raises NotAnOutput (a FileNotFoundError)
    connection = duckdb.connect()
    for statement in statements:
        connection.execute(statement)
    return connection


def query(output: str, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql`` run against the views of ``output``."""
    connection = connect(output)
    try:
        cursor = connection.execute(sql, params or [])
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
    finally:
        connection.close()


SIMILAR_SQL = """
SELECT title, cluster_size, first_seen,
       round(array_cosine_similarity(embedding, ?::FLOAT[{dim}])::DOUBLE, 4) AS cosine
FROM papers
WHERE embedding IS NOT NULL
ORDER BY cosine DESC, record_id
LIMIT ?
"""


def similar(output: str, vector, k: int = 10) -> tuple[list[str], list[tuple]]:
    """Canonical papers ranked by cosine to ``vector`` (query text never enters the SQL)."""
    dim = stored_embedding_dim(output)
    if dim is None:
        raise FileNotFoundError(f"{output!r} has no embeddings (run without --no_embeddings)")
    return query(output, SIMILAR_SQL.format(dim=int(dim)), [list(map(float, vector)), k])


def catalog_script(output: str) -> str:
    """The view statements as one script, ``;``-terminated, with absolute paths: paste it into
    the plain ``duckdb`` CLI or ``duckdb.connect().execute(...)`` in a notebook."""
    header = f"-- digestflow views over {absolute_path(versions.current_root(output))}\n"
    return header + "".join(statement + ";\n" for statement in view_statements(output))


def absolute_path(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


# ---- named reports ------------------------------------------------------------------------

REPORTS_PACKAGE = "beam_jobs.query"
REPORTS_DIR = "reports"


def _reports_root():
    return resources.files(REPORTS_PACKAGE) / REPORTS_DIR


def report_names() -> list[str]:
    """Names of the shipped reports (``beam_jobs/reports/NAME.sql``), sorted."""
    return sorted(
        entry.name.removesuffix(".sql")
        for entry in _reports_root().iterdir()
        if entry.name.endswith(".sql")
    )


def report_sql(name: str) -> str:
    """The SQL text of one report, header comment included (users read and copy it)."""
    if name not in report_names():
        raise ValueError(f"unknown report {name!r}; reports: {', '.join(report_names())}")
    return (_reports_root() / f"{name}.sql").read_text(encoding="utf-8")


def report_doc(name: str) -> str:
    """The report's header comment without the ``--`` markers: what it answers, its columns."""
    lines = []
    for line in report_sql(name).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[3:] if line.startswith("-- ") else line[2:])
    return "\n".join(lines)


def report_summary(name: str) -> str:
    """The first line of the report's header, without its ``name:`` prefix."""
    first = report_doc(name).splitlines()[0] if report_doc(name) else ""
    return first.split(":", 1)[1].strip() if first.startswith(f"{name}:") else first


def report(output: str, name: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of the named report run against ``output``."""
    return query(output, report_sql(name))
