"""A version's tables: where each lives, listing and reading its Parquet files (with the rows
later versions superseded left out), and leaving every table readable after a job wrote it.

This is the one place that knows a table is ``ROOT/<table>/*.parquet``: the pipeline writes
there, and readers (the catalog's views, the update's planner, compaction) read a table as
its :func:`table_slices`.

**Superseded rows.** An update does not copy the rows it leaves alone: its version lists the
previous version's data files as they are, its own new files, and per table a *delete file*
(``ROOT/_deletes/<table>.parquet``, one column: :data:`DELETE_KEYS`) naming the keys whose
older rows it replaces (merge-on-read, like Apache Iceberg's equality deletes). A row of a
file written by version *g* is live unless a delete file written by a version after *g*
names its key. A version's commit record lists a table's delete files under
``<table>.deletes``. ``digestflow compact`` rewrites the live rows into fresh files.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.store import commits
from beam_jobs.store.commits import DataFile
from beam_jobs.store.rows import conformed, iter_file, without
from beam_jobs.store.versions import (
    Manifest,
    delete_dir,
    is_remote,
    listed_files,
    version_number,
)
from transforms.parquet import read_parquet_file, write_parquet_file
from transforms.schema import TABLES

DELETES_DIR = "_deletes"
# table -> the column an update supersedes its rows by: every row of a changed cluster
# (records, clusters), of a text clustered again (lsh_bands), of a record clustered again
# (paper_names), of a dump read again (dead_letter, inputs). Embeddings are only added.
DELETE_KEYS = {
    "records": "cluster_id",
    "clusters": "cluster_id",
    "lsh_bands": "content_hash",
    "paper_names": "record_id",
    "dead_letter": "source_file",
    "inputs": "source_file",
}


def table_dir(root: str, table: str) -> str:
    """The directory of ``table`` in the version directory ``root``."""
    return FileSystems.join(root, table)


def temp_dir(root: str, table: str) -> str:
    """Where a table's files are written before they are moved into place (removed after)."""
    return FileSystems.join(root, f"_tmp_{table}")


def table_glob(root: str, table: str) -> str:
    """A glob of the Parquet files of ``table`` in ``root`` (Beam's and DuckDB's syntax).
    The directory is escaped, so an output named ``out[1]`` is that directory, not a
    character class."""
    return FileSystems.join(glob.escape(table_dir(root, table)), "*.parquet")


def table_files(root: str, table: str) -> list[str]:
    """The Parquet files of ``table`` in ``root``, sorted (local paths or gs:// URIs): for a
    published version resolved by :func:`~beam_jobs.store.versions.current_root`, exactly the
    files its commit record lists; else what the directory holds (a version being written)."""
    listed = listed_files(root, table)
    if listed is not None:
        return sorted(listed)
    return written_files(root, table)


def written_files(root: str, table: str) -> list[str]:
    """The Parquet files the directory of ``table`` in ``root`` holds now, sorted: what a
    writer completing a version lists (never a listing remembered from a version that was
    published under the same path before and is gone)."""
    directory = table_dir(root, table)
    if not is_remote(directory):
        # listed, not globbed: Beam's local match walks the whole tree above the first
        # glob character of the path (and misses a relative one)
        if not os.path.isdir(directory):
            return []
        return sorted(
            os.path.join(directory, name)
            for name in os.listdir(directory)
            if name.endswith(".parquet") and os.path.isfile(os.path.join(directory, name))
        )
    matched = FileSystems.match([table_glob(root, table)])[0].metadata_list
    return sorted(m.path for m in matched)


def deletes_name(table: str) -> str:
    """The commit record's name for the delete files of ``table``."""
    return f"{table}.deletes"


def deletes_path(root: str, table: str) -> str:
    """The delete file an update writing version ``root`` writes for ``table``."""
    return FileSystems.join(root, DELETES_DIR, f"{table}.parquet")


def generation(path: str) -> int:
    """The version that wrote a listed file (``.../v000003-1f2e3d4c/<table>/<name>``)."""
    number = version_number(PurePosixPath(path).parent.parent.name)
    if number is None:
        raise ValueError(f"{path} is not inside a version directory")
    return number


@dataclass(frozen=True)
class TableSlice:
    """Data files one version wrote, and the delete files of later versions that apply to
    them: a row is live unless one of ``deletes`` holds its ``key``."""

    files: tuple[str, ...]
    deletes: tuple[str, ...] = ()
    key: str | None = None


def table_slices(root: str, table: str) -> list[TableSlice]:
    """``table`` of version ``root`` as slices, oldest first (one slice, with no deletes,
    for a version no update wrote)."""
    files = table_files(root, table)
    deletes = listed_files(root, deletes_name(table)) or []
    if not files:
        return []
    if not deletes:
        return [TableSlice(tuple(files))]
    by_generation: dict[int, list[str]] = {}
    for path in files:
        by_generation.setdefault(generation(path), []).append(path)
    return [
        TableSlice(
            tuple(paths),
            tuple(d for d in deletes if generation(d) > number),
            DELETE_KEYS[table],
        )
        for number, paths in sorted(by_generation.items())
    ]


def deleted_keys(slices: list[TableSlice]) -> list[frozenset[str]]:
    """For each slice, the keys whose rows in it are superseded (each delete file is read
    once, though it applies to every older slice)."""
    by_file: dict[str, frozenset[str]] = {}
    for part in slices:
        for path in part.deletes:
            if path not in by_file:
                column = read_parquet_file(path, [part.key]).column(0)
                by_file[path] = frozenset(column.to_pylist())
    return [frozenset().union(*(by_file[path] for path in part.deletes)) for part in slices]


def _with_key(columns: list[str] | None, key: str | None) -> list[str] | None:
    """``columns`` plus the slice's key, which the filter needs (None: every column)."""
    if key is None or columns is None or key in columns:
        return columns
    return [*columns, key]


def read_table(root: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """The live rows of ``table`` in ``root`` (only ``columns``, if given); an empty table
    (no columns) when it has no files."""
    slices = table_slices(root, table)
    parts = []
    for part, deleted in zip(slices, deleted_keys(slices), strict=True):
        wanted = _with_key(columns, part.key)
        rows = pa.concat_tables(read_parquet_file(path, wanted) for path in part.files)
        if deleted:
            rows = without(rows, part.key, deleted)
        parts.append(rows if wanted is columns else rows.select(columns))
    return pa.concat_tables(parts) if parts else pa.table({})


def iter_table(root: str, table: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The live rows of ``table`` in ``root`` in chunks of bounded size (any column,
    including a fixed-size list holding nulls: :func:`beam_jobs.store.rows.iter_file`)."""
    slices = table_slices(root, table)
    for part, deleted in zip(slices, deleted_keys(slices), strict=True):
        wanted = _with_key(columns, part.key)
        for path in part.files:
            for chunk in iter_file(path, wanted):
                if deleted:
                    chunk = without(chunk, part.key, deleted)
                yield chunk if wanted is columns else chunk.select(columns)


def table_source(root: str, table: str, slices: list[TableSlice] | None = None) -> str:
    """The DuckDB relation of ``table``'s live rows in version ``root``: its directory's files
    for a version that lists no earlier files and no deletes, else the listed files less the
    rows whose key a delete file of a later version names."""
    slices = table_slices(root, table) if slices is None else slices
    own = table_dir(root, table).rstrip("/") + "/"
    if (
        len(slices) == 1
        and not slices[0].deletes
        and all(path.startswith(own) for path in slices[0].files)
    ):
        return f"read_parquet({duckdb_quote(table_glob(root, table))})"
    files = [path for part in slices for path in part.files]
    deletes = sorted({path for part in slices for path in part.deletes})
    if not deletes:
        return _files_sql(files)
    # One scan of the data and one of the delete files, whatever the number of versions:
    # a row is live unless the newest version deleting its key is newer than its own.
    key = f'"{slices[0].key}"'
    newest = (
        f"(SELECT {key} AS _key, max({_GENERATION.format('filename')}) AS _deleted "
        f"FROM {_files_sql(deletes, with_name=True)} GROUP BY 1)"
    )
    return (
        f"(SELECT t.* EXCLUDE (filename) FROM {_files_sql(files, with_name=True)} AS t "
        f"LEFT JOIN {newest} AS d ON t.{key} = d._key "
        f"WHERE d._deleted IS NULL OR d._deleted <= {_GENERATION.format('t.filename')})"
    )


# The version that wrote a file, from its path (as :func:`generation` reads it):
# .../v000003-1f2e3d4c/<table or _deletes>/<name>
_GENERATION = (
    "CAST(regexp_extract({}, '/v([0-9]{{6,}})(-[0-9a-f]{{8}})?/[^/]+/[^/]+$', 1) AS BIGINT)"
)


def _files_sql(paths: tuple[str, ...] | list[str], with_name: bool = False) -> str:
    listed = ", ".join(duckdb_quote(duckdb_literal(p)) for p in paths)
    return f"read_parquet([{listed}]{', filename = true' if with_name else ''})"


def duckdb_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_literal(path: str) -> str:
    """``path`` as a DuckDB file argument: DuckDB globs every path it is given."""
    return glob.escape(path)


def select_rows(
    root: str,
    table: str,
    columns: list[str],
    column: str,
    values: Collection[str],
    threads: int = 1,
) -> pa.Table:
    """The live rows of ``table`` in ``root`` whose ``column`` is in ``values`` (only
    ``columns``, typed as the files are). DuckDB pushes the filter into the scan, so the
    other columns are decoded only near matching rows (several times faster than reading
    them whole when few rows match). ``threads``: 1 beside a running pipeline."""
    schema = file_schema(root, table)
    selected = ", ".join(f'"{name}"' for name in columns)
    sql = (
        f"SELECT {selected} FROM {table_source(root, table)} "
        f'WHERE "{column}" IN (SELECT unnest(?::VARCHAR[]))'
    )
    connection = duckdb.connect(config={"threads": threads})
    try:
        found = connection.sql(sql, params=[sorted(values)]).to_arrow_table()
    finally:
        connection.close()
    return conformed(found, pa.schema([schema.field(name) for name in columns]))


def file_schema(root: str, table: str) -> pa.Schema:
    """The Arrow schema ``table``'s files were written with (the records' embedding size
    depends on the model), or the contract's when it has no file."""
    files = table_files(root, table)
    if not files:
        return TABLES[table]
    with FileSystems.open(files[0]) as handle:
        return pq.read_schema(handle)


def write_deletes(root: str, table: str, keys: frozenset[str] | set[str]) -> str | None:
    """Write the delete file of ``table`` for version ``root`` (None: no keys, no file)."""
    if not keys:
        return None
    path = deletes_path(root, table)
    write_parquet_file(pa.table({DELETE_KEYS[table]: pa.array(sorted(keys), pa.string())}), path)
    return path


def written_deletes(root: str) -> dict[str, list[str]]:
    """The delete files version ``root`` wrote, by their commit record name."""
    found = {}
    for table in DELETE_KEYS:
        path = deletes_path(root, table)
        if os.path.isfile(path) if not is_remote(path) else FileSystems.exists(path):
            found[deletes_name(table)] = [path]
    return found


def finalize_tables(root: str, skip: Collection[str] = ()) -> None:
    """Remove the writers' leftover temporary directories, and give a table with no rows an
    empty Parquet file so its DuckDB view always works (not the tables in ``skip``: an
    update lists files of earlier versions for them)."""
    for name, schema in TABLES.items():
        directory = table_dir(root, name)
        delete_dir(temp_dir(root, name))
        if name not in skip and not written_files(root, name):
            if not is_remote(directory) and not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
            empty = FileSystems.join(directory, "part-empty.parquet")
            write_parquet_file(schema.empty_table(), empty)


def listing_manifest(
    output: str,
    version: int,
    root: str,
    extra: dict[str, Any],
    carried: Mapping[str, tuple[DataFile, ...]] | None = None,
) -> Manifest:
    """The manifest of the finished version directory ``root``, listing its every data and
    delete file, after the ``carried`` files of earlier versions (so readers use exactly
    those, and refuse the version if one goes missing)."""
    files = {table: written_files(root, table) for table in TABLES}
    files.update(written_deletes(root))
    described = commits.describe_files(output, files)
    for name, entries in (carried or {}).items():
        described[name] = [entry.to_json() for entry in entries] + described.get(name, [])
    extra = {**extra, "files": described}
    return Manifest(version, root.rstrip("/").rsplit("/", 1)[-1], extra)
