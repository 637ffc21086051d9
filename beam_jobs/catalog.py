"""DuckDB over a digestflow output directory: one view per table, plus ``papers``."""

from __future__ import annotations

import glob
import os

import duckdb
import pyarrow.parquet as pq

from beam_jobs import layout
from transforms.schema import TABLES


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def embedding_dim(output: str) -> int | None:
    """The fixed size of the records' embedding column, read from a Parquet footer."""
    files = sorted(glob.glob(layout.table_glob(output, "records")))
    if not files:
        return None
    field = pq.read_schema(files[0]).field("embedding") if files else None
    return getattr(field.type, "list_size", None) if field is not None else None


def view_statements(output: str) -> list[str]:
    """CREATE VIEW statements, pasteable into the plain ``duckdb`` CLI or a notebook.

    DuckDB reads a Parquet fixed-size list as FLOAT[]; the records view casts the embedding
    to FLOAT[dim] so ``array_cosine_similarity`` works on it.
    """

    def source(name: str) -> str:
        path = layout.table_glob(output, name)
        return f"read_parquet({_quote(path if '://' in path else os.path.abspath(path))})"

    dim = embedding_dim(output)
    cast = f" REPLACE (embedding::FLOAT[{dim}] AS embedding)" if dim else ""
    statements = [f"CREATE OR REPLACE VIEW records AS SELECT *{cast} FROM {source('records')}"]
    statements += [
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source(name)}"
        for name in TABLES
        if name != "records"
    ]
    statements.append(
        "CREATE OR REPLACE VIEW papers AS SELECT r.*, c.size AS cluster_size, "
        "c.first_digest_date AS first_seen, c.last_digest_date AS last_seen "
        "FROM records r JOIN clusters c USING (cluster_id) WHERE r.is_canonical"
    )
    return statements


def connect(output: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``output`` loaded."""
    layout.current_root(output)  # raises NotAnOutput (a FileNotFoundError) with the reason
    connection = duckdb.connect()
    for statement in view_statements(output):
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
    dim = embedding_dim(output)
    if dim is None:
        raise FileNotFoundError(f"{output!r} has no embeddings (run without --no_embeddings)")
    return query(output, SIMILAR_SQL.format(dim=int(dim)), [list(map(float, vector)), k])
