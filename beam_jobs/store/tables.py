"""A version's tables: where each lives, listing and reading its Parquet files, and leaving
every table readable after a job wrote it.

This is the one place that knows a table is ``ROOT/<table>/*.parquet``: the pipeline writes
there, the update reads and copies from there, and the catalog points DuckDB there.
"""

from __future__ import annotations

import glob
import os

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from beam_jobs.store.versions import delete_dir, is_remote, listed_files
from transforms.parquet import read_parquet_file, write_parquet_file
from transforms.schema import TABLES


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


def read_table(root: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of ``table`` in ``root`` (only ``columns``, if given); an empty table (no
    columns) when it has no files."""
    parts = [read_parquet_file(path, columns) for path in table_files(root, table)]
    return pa.concat_tables(parts) if parts else pa.table({})


def finalize_tables(root: str) -> None:
    """Remove the writers' leftover temporary directories, and give a table with no rows an
    empty Parquet file so its DuckDB view always works."""
    for name, schema in TABLES.items():
        directory = table_dir(root, name)
        delete_dir(temp_dir(root, name))
        if not written_files(root, name):
            if not is_remote(directory) and not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
            empty = FileSystems.join(directory, "part-empty.parquet")
            write_parquet_file(schema.empty_table(), empty)
