"""``digestflow sql DIR`` without a query: a small SQL shell over the output's views."""

from __future__ import annotations

import sys
from typing import TextIO

import duckdb

from beam_jobs.cli.formatting import format_table
from beam_jobs.errors import UserError
from beam_jobs.query import catalog

SHELL_HELP = """statements end with ';' and may span lines. Views: records, clusters, dead_letter,
papers. Commands: .tables  .schema VIEW  .report NAME  .help  .quit (or end of input)"""


def sql_shell(connection: duckdb.DuckDBPyConnection, stdin: TextIO, stdout: TextIO) -> int:
    """A small SQL shell over the loaded views (the ``duckdb`` CLI is a separate install; this
    one needs nothing but the Python package). Reads ``;``-terminated statements from
    ``stdin``: prompts and line editing on a terminal, a plain script when piped. Errors are
    printed and the shell goes on; piped input that had an error ends in one
    :class:`UserError` counting the failures (the CLI's error line, exit status 2)."""
    interactive = stdin.isatty()

    def read_line(prompt: str) -> str | None:
        if interactive and stdin is sys.stdin:
            try:
                return input(prompt) + "\n"
            except EOFError:
                return None
        if interactive:
            stdout.write(prompt)
            stdout.flush()
        return stdin.readline() or None

    if interactive:
        print(f"digestflow SQL shell (DuckDB {duckdb.__version__}); {SHELL_HELP}", file=stdout)
    failed = 0
    buffer: list[str] = []
    while (line := read_line("...> " if buffer else "sql> ")) is not None:
        if not buffer and line.strip().startswith("."):
            if line.strip() in (".quit", ".exit"):
                break
            failed += not _shell_command(connection, line.strip(), stdout)
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            failed += not _shell_execute(connection, "".join(buffer), stdout)
            buffer = []
    if "".join(buffer).strip():
        failed += not _shell_execute(connection, "".join(buffer), stdout)
    if failed and not interactive:
        plural = "s" if failed != 1 else ""
        raise UserError(f"{failed} statement{plural} of the script failed (errors above)")
    return 0


def _shell_execute(connection: duckdb.DuckDBPyConnection, sql: str, stdout: TextIO) -> bool:
    try:
        cursor = connection.execute(sql)
        if cursor is None:  # only blanks, ';' or comments: nothing ran
            return True
        rows = cursor.fetchall() if cursor.description else None
    except duckdb.Error as error:
        print(f"SQL error: {error}", file=stdout)
        return False
    if rows is None:
        print("ok", file=stdout)
    else:
        print(format_table([d[0] for d in cursor.description], rows), file=stdout)
    return True


def _shell_command(connection: duckdb.DuckDBPyConnection, command: str, stdout: TextIO) -> bool:
    name, _, argument = command.partition(" ")
    argument = argument.strip()
    if name == ".tables":
        return _shell_execute(
            connection,
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name",
            stdout,
        )
    if name == ".schema" and argument:
        return _shell_execute(connection, f"DESCRIBE {argument}", stdout)
    if name == ".report" and argument.startswith(catalog.CHANGES_PREFIX):
        # The shell's views are one version's; these reports also read an earlier one.
        print(f"{argument} compares two versions: run `digestflow report DIR changes`", file=stdout)
        return False
    if name == ".report" and argument in catalog.report_names():
        return _shell_execute(connection, catalog.report_sql(argument), stdout)
    if name == ".help":
        print(SHELL_HELP, file=stdout)
        print("reports: " + ", ".join(catalog.report_names()), file=stdout)
        return True
    print(f"unknown command {command!r}; {SHELL_HELP}", file=stdout)
    return False
