"""DuckDB over a digestflow output directory: one view per table, plus ``papers``, and the
named reports (documented SQL files shipped in ``beam_jobs/query/reports/``).

Everything that knows where a table lives or what a view means is here, so the CLI, the HTML
report and a user's own notebook (``digestflow catalog DIR --sql``) all see the same views.
Before any view is made, the current version is checked as a reader can check it: every
Parquet footer readable, no table left without files, and the row counts the run summary
records; a damaged output is one :class:`~beam_jobs.store.versions.DamagedOutput` naming
the file, never a traceback halfway through a query. The ``changes_*`` reports also read
``previous_records``, ``previous_clusters`` and ``previous_papers``: the same views over an
earlier kept version (:func:`connect_changes`), resolved and checked the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.query import search
from beam_jobs.store import commits, versions
from beam_jobs.store.tables import (
    TableSlice,
    deletes_name,
    table_dir,
    table_files,
    table_slices,
    table_source,
)
from beam_jobs.store.tables import (
    duckdb_literal as _literal,
)
from beam_jobs.store.versions import DamagedOutput, recovery_hint
from transforms.schema import TABLES

# The papers view joins these two: an output without either cannot be queried.
REQUIRED_TABLES = ("records", "clusters")
# run_summary.json counts the rows written to these tables (checked before publishing),
# so a table holding fewer has lost a file.
SUMMARY_ROWS = {"records": "rows_written", "clusters": "clusters"}


@dataclass(frozen=True)
class Version:
    """The current version of an output as the views see it."""

    output: str
    root: str  # absolute (or a gs:// URI)
    files: dict[str, list[str]]  # table -> its Parquet files, for tables that have any
    embedding_dim: int | None
    rows: dict[str, int] = field(default_factory=dict)  # file -> rows, from its footer
    # table -> its files as slices with the delete files that apply (beam_jobs.store.tables)
    slices: dict[str, list[TableSlice]] = field(default_factory=dict)

    def deletes(self) -> dict[str, list[str]]:
        """The delete files of each table that has any, by commit-record name."""
        found: dict[str, list[str]] = {}
        for table, parts in self.slices.items():
            paths = sorted({path for part in parts for path in part.deletes})
            if paths:
                found[deletes_name(table)] = paths
        return found

    def source(self, table: str) -> str:
        """The SQL relation of ``table``'s live rows (see :func:`table_source`)."""
        return table_source(self.root, table, self.slices.get(table))


def current_version(
    output: str,
    connection: duckdb.DuckDBPyConnection | None = None,
    snapshot: int | None = None,
) -> Version:
    """The current version of ``output`` (or the kept version ``snapshot``), checked (see the
    module doc). The manifest is read once, so every view made from the result reads the same
    version even while an update publishes a new one."""
    if snapshot is None:
        root = absolute_path(versions.current_root(output))  # NotAnOutput, DamagedOutput
        return _checked_version(output, root, connection)
    manifest = snapshot_manifest(output, snapshot)
    root = absolute_path(versions.verified_root(output, manifest))
    return _checked_version(output, root, connection)


def snapshot_manifest(output: str, snapshot: int) -> versions.Manifest:
    """The manifest version ``snapshot`` of ``output`` was published with, if it is still
    kept (the current one or one of the ``--keep_versions`` before it); else a
    :class:`UserError` naming the versions kept."""
    manifest = versions.current_manifest(output)
    current = manifest.version
    if snapshot == current:
        return manifest
    if snapshot > current:
        raise UserError(
            f"--snapshot {snapshot}: the newest version is {current}; "
            f"{_kept_phrase(output, current)}"
        )
    return _earlier_kept_manifest(output, current, snapshot, "--snapshot")


def _checked_version(
    output: str, root: str, connection: duckdb.DuckDBPyConnection | None
) -> Version:
    """The version in ``root`` (resolved through a manifest or commit record), checked."""
    files: dict[str, list[str]] = {}
    slices: dict[str, list[TableSlice]] = {}
    for name in TABLES:
        found = table_files(root, name)
        if found:
            files[name] = found
            slices[name] = table_slices(root, name)
        elif name in REQUIRED_TABLES or _local_dir(table_dir(root, name)):
            # every finished run leaves each table at least one (maybe empty) file; a table
            # with no directory at all was written before that table existed
            raise DamagedOutput(
                f"{table_dir(root, name)} holds no Parquet files (a finished run leaves at "
                f"least one): they were deleted; {recovery_hint(output)}"
            )
    own = connection is None
    connection = duckdb.connect() if own else connection
    try:
        rows = _check_footers(output, root, files, slices, connection)
    finally:
        if own:
            connection.close()
    dim = _embedding_dim(output, files["records"][0])
    return Version(output, root, files, dim, rows, slices)


def _local_dir(path: str) -> bool:
    return not versions.is_remote(path) and os.path.isdir(path)


def _damaged_file(output: str, path: str, error: Exception) -> DamagedOutput:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = reason.replace(f" '{_literal(path)}'", "").replace(f" '{path}'", "")
    return DamagedOutput(
        f"{path} is not a readable Parquet file ({reason}); {recovery_hint(output)}"
    )


def _check_footers(
    output: str,
    root: str,
    files: dict[str, list[str]],
    slices: dict[str, list[TableSlice]],
    connection: duckdb.DuckDBPyConnection,
) -> dict[str, int]:
    """Every file's footer parses (a truncated or overwritten file fails here, not in the
    middle of someone's query), and the tables the run summary counts hold those rows (live
    rows, where later versions superseded some). Returns each file's row count."""
    every = [path for paths in files.values() for path in paths]
    every += sorted({d for parts in slices.values() for part in parts for d in part.deletes})
    sql = "SELECT file_name, num_rows FROM parquet_file_metadata(?)"
    try:
        # one statement: DuckDB reads the footers in parallel (it matters on gs://)
        rows = dict(connection.execute(sql, [[_literal(p) for p in every]]).fetchall())
    except duckdb.Error as error:
        for path in every:  # which file it was, named by us rather than by the message
            try:
                connection.execute(sql, [[_literal(path)]]).fetchall()
            except duckdb.Error as per_file:
                raise _damaged_file(output, path, per_file) from None
        raise _damaged_file(output, root, error) from None
    summary_path = FileSystems.join(root, versions.SUMMARY_FILE)
    summary = _read_summary(summary_path)
    for table, key in SUMMARY_ROWS.items():
        expected = summary.get(key)
        if table not in files or not isinstance(expected, int):
            continue
        if any(part.deletes for part in slices.get(table, [])):
            source = table_source(root, table, slices[table])
            held = connection.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        else:
            held = sum(rows.get(path, 0) for path in files[table])
        if held != expected:
            raise DamagedOutput(
                f"{table_dir(root, table)} holds {held} rows, but {summary_path} says "
                f"{expected} were written: a Parquet file is missing; {recovery_hint(output)}"
            )
    return rows


def _read_summary(path: str) -> dict:
    """The run summary, or nothing to check against (a detached job writes none)."""
    try:
        with FileSystems.open(path) as fh:
            summary = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _embedding_dim(output: str, path: str) -> int | None:
    """The fixed size of the records' embedding column, from a Parquet footer's Arrow
    schema (local or gs://): DuckDB reads the column as a variable-size list."""
    try:
        with FileSystems.open(path) as fh:
            schema = pq.read_schema(fh)
    except (OSError, pa.ArrowException) as error:
        raise _damaged_file(output, path, error) from None
    if "embedding" not in schema.names:
        return None
    return getattr(schema.field("embedding").type, "list_size", None)


def stored_embedding_dim(output: str) -> int | None:
    """The fixed size of the records' embedding column of the current version."""
    return current_version(output).embedding_dim


def _views(
    version: Version, prefix: str = "", tables: tuple[str, ...] = tuple(TABLES)
) -> list[str]:
    """DuckDB reads a Parquet fixed-size list as FLOAT[]; the records view casts the
    embedding to FLOAT[dim] so ``array_cosine_similarity`` works on it. A table an output
    has no files for (written before that table existed) gets no view, rather than failing
    every query. ``prefix`` names the views of an earlier snapshot (``previous_``)."""

    source = version.source
    dim = version.embedding_dim
    cast = f" REPLACE (embedding::FLOAT[{dim}] AS embedding)" if dim else ""
    statements = [
        f"CREATE OR REPLACE VIEW {prefix}records AS SELECT *{cast} FROM {source('records')}"
    ]
    statements += [
        f"CREATE OR REPLACE VIEW {prefix}{name} AS SELECT * FROM {source(name)}"
        for name in tables
        if name != "records" and name in version.files
    ]
    statements.append(
        f"CREATE OR REPLACE VIEW {prefix}papers AS SELECT r.*, c.size AS cluster_size, "
        "c.first_digest_date AS first_seen, c.last_digest_date AS last_seen "
        f"FROM {prefix}records r JOIN {prefix}clusters c USING (cluster_id) WHERE r.is_canonical"
    )
    return statements


def _previous_views(previous: Version | None) -> list[str]:
    """The ``previous_records``, ``previous_clusters`` and ``previous_papers`` views of the
    snapshot a ``changes_*`` report compares against. Without one (a first run) they are the
    current views with no rows: every paper is new, and the reports need no special case."""
    if previous is None:
        return [
            f"CREATE OR REPLACE VIEW previous_{name} AS SELECT * FROM {name} WHERE false"
            for name in PREVIOUS_VIEWS
        ]
    return _views(previous, prefix="previous_", tables=REQUIRED_TABLES)


def view_statements(output: str) -> list[str]:
    """CREATE VIEW statements over the current version, pasteable into the plain ``duckdb``
    CLI or a notebook."""
    return _views(current_version(output))


def connect(output: str, snapshot: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of ``output`` loaded (of its current
    version, or of the kept version ``snapshot``)."""
    connection = duckdb.connect()
    try:
        # raises NotAnOutput (a FileNotFoundError) or DamagedOutput (a UserError)
        for statement in _views(current_version(output, connection, snapshot)):
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


# ---- the snapshot an update is compared against ------------------------------------------

# the views of the earlier snapshot that the changes_* reports read (as previous_NAME)
PREVIOUS_VIEWS = ("records", "clusters", "papers")
# reports that compare two snapshots: they need the previous_* views
CHANGES_PREFIX = "changes_"


@dataclass(frozen=True)
class Compared:
    """The two snapshots a connection made by :func:`connect_changes` holds views of."""

    version: int  # the current version
    since: int | None  # the earlier one; None when there is none (a first run)


def connect_changes(
    output: str, since: int | None = None
) -> tuple[duckdb.DuckDBPyConnection, Compared]:
    """A connection with the views of the current version of ``output`` and the
    ``previous_*`` views of version ``since`` (default: the newest earlier version still
    kept, if any). Both are read through their commit records and checked as
    :func:`current_version` checks; a ``since`` that is not an earlier kept version is a
    :class:`UserError` naming the versions kept, a damaged one a :class:`DamagedOutput`."""
    manifest = versions.current_manifest(output)  # once: an update may publish meanwhile
    connection = duckdb.connect()
    try:
        root = absolute_path(versions.verified_root(output, manifest))
        current = _checked_version(output, root, connection)
        try:
            earlier = _since_manifest(output, manifest.version, since)
        except DamagedOutput as error:
            raise _compared_damaged(since or manifest.version - 1, error) from None
        previous = None if earlier is None else _since_version(output, earlier, connection)
        for statement in _views(current) + _previous_views(previous):
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection, Compared(manifest.version, None if earlier is None else earlier.version)


def _earlier_candidates(output: str, current: int) -> list[int]:
    """Versions before ``current`` that may still be kept, newest first: every one with a
    commit record, and the one before the current (an output older than the commit log)."""
    committed = {v for v in commits.committed_versions(output) if v < current}
    return sorted(committed | ({current - 1} if current > 1 else set()), reverse=True)


def _is_kept(output: str, version: int, oldest: int | None) -> bool:
    """Within the newest ``--keep_versions`` (when the current version records it: a
    retired version's directory can outlive it while newer versions list its files), and
    its directory still there."""
    if oldest is not None and version < oldest:
        return False
    if version in commits.committed_versions(output):
        try:
            root = str(commits.read_commit(output, version)["root"])
        except (OSError, ValueError, KeyError, TypeError):
            return True  # kept, but damaged: reading it says what is wrong
        return versions.dir_exists(FileSystems.join(output, root))
    return versions.dir_exists(FileSystems.join(output, versions.version_name(version)))


def _kept_earlier(output: str, current: int) -> list[int]:
    """The versions before ``current`` that are still kept, newest first."""
    oldest = versions.oldest_kept(output, current)
    return [v for v in _earlier_candidates(output, current) if _is_kept(output, v, oldest)]


def kept_versions(output: str, current: int) -> list[int]:
    """The published versions of ``output`` that are still kept, oldest first (``current``
    included): the ones a ``--since`` or ``--snapshot`` can name."""
    return sorted([*_kept_earlier(output, current), current])


def _kept_phrase(output: str, current: int) -> str:
    kept = kept_versions(output, current)
    if len(kept) == 1:
        return f"this output keeps only version {current}, the current one"
    listed = ", ".join(map(str, kept[:-1])) + f" and {kept[-1]}"
    return f"this output keeps versions {listed} ({current} is the current one)"


def _since_manifest(output: str, current: int, since: int | None) -> versions.Manifest | None:
    """The manifest of the version to compare against (None: there is none to default to)."""
    if since is None:
        if current == 1:
            return None  # a first run: there is no earlier snapshot, every paper is new
        found = next(iter(_kept_earlier(output, current)), None)
        if found is None:
            raise UserError(
                f"no earlier version of this output is kept (version {current - 1} was retired "
                "or deleted), so there is nothing to compare the current version with"
            )
        return _published_manifest(output, found)
    if since >= current:
        raise UserError(
            f"--since {since}: not earlier than the current version {current}; "
            f"{_kept_phrase(output, current)}"
        )
    return _earlier_kept_manifest(output, current, since, "--since")


def _earlier_kept_manifest(output: str, current: int, version: int, flag: str) -> versions.Manifest:
    """The manifest of ``version``, an earlier version than ``current`` that ``flag`` names,
    or a :class:`UserError` naming the versions kept."""
    if version < 1:
        raise UserError(
            f"{flag} {version}: versions are numbered from 1; {_kept_phrase(output, current)}"
        )
    if version not in _kept_earlier(output, current):
        raise UserError(
            f"{flag} {version}: version {version} is no longer kept (a run keeps the "
            f"--keep_versions newest, 2 by default); {_kept_phrase(output, current)}"
        )
    return _published_manifest(output, version)


def _published_manifest(output: str, version: int) -> versions.Manifest:
    """The manifest ``version`` was published with: its commit record, or (an output older
    than the commit log) the plain version directory with no file list."""
    if version not in commits.committed_versions(output):
        return versions.Manifest(version, versions.version_name(version))
    path = commits.commit_path(output, version)
    try:
        manifest = versions.Manifest.from_json(json.dumps(commits.read_commit(output, version)))
        if manifest.version != version:
            raise ValueError(f"holds version {manifest.version}, not {version}")
        commits.files_of(manifest.extra)
    except OSError as error:
        raise DamagedOutput(f"cannot read {path}: {error}") from None
    except UnicodeDecodeError:
        raise DamagedOutput(f"{path} is damaged: it is not UTF-8 text") from None
    except ValueError as error:
        raise DamagedOutput(f"{path} is damaged: it {error}") from None
    return manifest


def _since_version(
    output: str, manifest: versions.Manifest, connection: duckdb.DuckDBPyConnection
) -> Version:
    """The earlier version, checked like the current one; its damage is named as the
    compared snapshot's (the current version is fine, and another --since may do)."""
    try:
        root = absolute_path(versions.verified_root(output, manifest))
        return _checked_version(output, root, connection)
    except DamagedOutput as error:
        raise _compared_damaged(manifest.version, error) from None


def _compared_damaged(version: int, error: DamagedOutput) -> DamagedOutput:
    return DamagedOutput(f"version {version}, the snapshot compared against, is damaged: {error}")


def run_sql(
    connection: duckdb.DuckDBPyConnection, sql: str, params: list | None = None
) -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql`` on ``connection`` (none for a script of comments)."""
    cursor = connection.execute(sql, params or [])
    if cursor is None:  # only blanks, ';' or comments: nothing ran
        return [], []
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall()


def query(
    output: str, sql: str, params: list | None = None, snapshot: int | None = None
) -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql`` run against the views of ``output`` (its current
    version, or the kept version ``snapshot``)."""
    connection = connect(output, snapshot)
    try:
        return run_sql(connection, sql, params)
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
# SIMILAR_SQL over the papers the index says can rank in the top k, with their vectors from
# the index (beam_jobs/query/search.py): the same expression, order and rows.
SIMILAR_AMONG_SQL = """
SELECT p.title, p.cluster_size, p.first_seen,
       round(array_cosine_similarity(h.embedding, ?::FLOAT[{dim}])::DOUBLE, 4) AS cosine
FROM papers p
JOIN (SELECT unnest(?::VARCHAR[]) AS record_id, unnest(?::FLOAT[{dim}][]) AS embedding) h
  USING (record_id)
WHERE list_contains(?::VARCHAR[], p.record_id)
ORDER BY cosine DESC, p.record_id
LIMIT ?
"""
# More candidates than this (scores tied within search.SLACK): the full scan is as cheap.
MAX_CANDIDATES = 10_000


def searchable_dim(output: str) -> int:
    """The embedding size of ``output``, refused with a clear message when no paper in it
    has a vector (checked before anyone loads a model to search it)."""
    connection = duckdb.connect()
    try:
        version = current_version(output, connection)
        dim = version.embedding_dim
        if dim:
            for statement in _views(version):
                connection.execute(statement)
            sql = "SELECT 1 FROM records WHERE embedding IS NOT NULL LIMIT 1"
            if connection.execute(sql).fetchall():
                return int(dim)
    finally:
        connection.close()
    settings = _recorded_settings(output)
    if settings is not None and settings.get("embedding") is None:
        raise UserError("this output has no embeddings (it was built with --no_embeddings)")
    raise UserError(
        "this output has no embeddings (built with --no_embeddings, or every embedding "
        f"batch failed: see embedding_failures in {versions.SUMMARY_FILE})"
    )


def embedding_settings(output: str) -> dict:
    """How the current version's papers were embedded (backend, sequence length, ...) as its
    run recorded it; empty when it recorded none (an output older than the settings)."""
    settings = _recorded_settings(output)
    embedding = settings.get("embedding") if settings is not None else None
    return embedding if isinstance(embedding, dict) else {}


def _recorded_settings(output: str) -> dict | None:
    """The settings the current version's run recorded (None: it recorded none)."""
    manifest = versions.read_manifest(output)
    settings = manifest.extra.get("settings") if manifest is not None else None
    return settings if isinstance(settings, dict) else None


def similar(
    output: str,
    vector,
    k: int = 10,
    cache_dir: Path | None = None,
    use_index: bool = True,
) -> tuple[list[str], list[tuple]]:
    """Canonical papers ranked by cosine to ``vector`` (query text never enters the SQL):
    :data:`SIMILAR_SQL` over the papers the version's index (built on first use, see
    :mod:`beam_jobs.query.search`) says can rank in the top ``k``, or over all of them with
    ``use_index=False``; the same rows either way."""
    dim = searchable_dim(output)
    if len(vector) != dim:
        raise UserError(
            f"the model gives {len(vector)}-dimensional vectors but this output's are "
            f"{dim}-dimensional: pass the --model the run used"
        )
    connection = duckdb.connect()
    try:
        version = current_version(output, connection)
        for statement in _views(version):
            connection.execute(statement)
        query_vector = [float(v) for v in vector]
        name = search.index_name(output, version.root, {**version.files, **version.deletes()})
        index = None if not use_index else search.open_index(connection, name, dim, cache_dir)
        if index is not None:
            ids, vectors = index.candidates(np.asarray(query_vector, dtype=np.float32), k)
            if len(ids) <= MAX_CANDIDATES:
                sql = SIMILAR_AMONG_SQL.format(dim=dim)
                return run_sql(connection, sql, [query_vector, ids, vectors, ids, k])
        # the full scan: the same rows, slower
        return run_sql(connection, SIMILAR_SQL.format(dim=dim), [query_vector, k])
    finally:
        connection.close()


@dataclass(frozen=True)
class Verified:
    """What ``digestflow verify`` checked of one version: per table (files, rows, bytes), and
    how (``sha256``: every byte against the recorded checksum; ``size+rows``: an object store,
    where none is recorded; ``footers``: an output written before commit records, checked as
    the readers check it)."""

    version: int
    tables: dict[str, tuple[int, int, int]]
    checked: str


def verify(output: str, snapshot: int | None = None) -> Verified:
    """Read every file of the current version (or of the kept version ``snapshot``) in full
    and compare it with its commit record; a :class:`DamagedOutput` naming every file that
    differs, or what was checked."""
    manifest = (
        snapshot_manifest(output, snapshot)
        if snapshot is not None
        else versions.current_manifest(output)
    )
    root = FileSystems.join(output, manifest.root)
    if "files" not in manifest.extra or not versions.dir_exists(root):
        # names what is missing and where it is listed; an output written before commit
        # records gets the readers' checks (footers, row counts), all there is to check
        checked = _checked_version(
            output, absolute_path(versions.verified_root(output, manifest)), None
        )
        return Verified(manifest.version, _footer_counts(checked), "footers")
    listed = commits.files_of(manifest.extra)
    problems = commits.verify_files(output, listed)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise DamagedOutput(
            f"version {manifest.version} is damaged: {len(problems)} of "
            f"{sum(map(len, listed.values()))} files differ from its commit record: {shown}; "
            f"{recovery_hint(output)}"
        )
    tables = {
        table: (len(files), sum(f.rows for f in files), sum(f.bytes for f in files))
        for table, files in sorted(listed.items())
    }
    checked = "sha256" if all(f.sha256 for fs in listed.values() for f in fs) else "size+rows"
    return Verified(manifest.version, tables, checked)


def _footer_counts(version: Version) -> dict[str, tuple[int, int, int]]:
    """(files, rows, bytes) per table: rows from the footers the check read, sizes by stat."""
    counts = {}
    for table, paths in sorted(version.files.items()):
        size = sum(commits.file_size(p) or 0 for p in paths)
        counts[table] = (len(paths), sum(version.rows.get(p, 0) for p in paths), size)
    return counts


def catalog_script(output: str, snapshot: int | None = None) -> str:
    """The view statements as one script, ``;``-terminated, with absolute paths: paste it into
    the plain ``duckdb`` CLI or ``duckdb.connect().execute(...)`` in a notebook. They read the
    files of one version, so they stay valid until that version is retired (``--keep_versions``
    later runs on)."""
    version = current_version(output, snapshot=snapshot)
    header = f"-- digestflow views over {version.root}\n"
    return header + "".join(statement + ";\n" for statement in _views(version))


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


def report(
    output: str, name: str, since: int | None = None, snapshot: int | None = None
) -> tuple[list[str], list[tuple]]:
    """Column names and rows of the named report run against ``output`` (or its kept version
    ``snapshot``); a ``changes_*`` report compares the current version with version ``since``
    (default: the previous snapshot kept)."""
    sql = report_sql(name)
    if not name.startswith(CHANGES_PREFIX):
        return query(output, sql, snapshot=snapshot)
    if snapshot is not None:
        raise UserError("--snapshot does not apply to the changes reports (use --since)")
    connection, _ = connect_changes(output, since)
    try:
        return run_sql(connection, sql)
    finally:
        connection.close()
