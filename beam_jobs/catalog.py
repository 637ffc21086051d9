"""DuckDB over a digestflow output directory: one view per table, plus ``papers``."""

from __future__ import annotations

import os

import duckdb

from transforms.schema import TABLES


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def view_statements(output: str) -> list[str]:
    """CREATE VIEW statements, pasteable into the plain ``duckdb`` CLI or a notebook."""
    statements = [
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("
        f"{_quote(os.path.join(output, name, '*.parquet'))}, union_by_name = true)"
        for name in TABLES
    ]
    statements.append(
        "CREATE OR REPLACE VIEW papers AS SELECT r.*, c.size AS cluster_size, "
        "c.first_digest_date AS first_seen, c.last_digest_date AS last_seen "
        "FROM records r JOIN clusters c USING (cluster_id) WHERE r.is_canonical"
    )
    return statements


def connect(output: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``output`` loaded."""
    if not os.path.isdir(os.path.join(output, "records")):
        raise FileNotFoundError(f"{output!r} is not a digestflow output (no records/ inside)")
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
