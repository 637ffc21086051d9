"""Rows of Parquet files in bounded chunks: reading any file of a table back (including a
fixed-size list column holding nulls, which pyarrow cannot read), filtering rows by a key,
and writing chunks into row groups of the sink's size.

Used where a table is read or rewritten outside the pipeline: the update's planner (the part's
records, joined copies' templates) and compaction.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.schema import ROWS_PER_ROW_GROUP

CHUNK_ROWS = 16384  # rows read, filtered and buffered at a time


def without(table: pa.Table, column: str, values: Collection[str]) -> pa.Table:
    """``table`` less the rows whose ``column`` is in ``values``."""
    if not values or table.num_rows == 0:
        return table
    value_set = pa.array(sorted(values), pa.string())
    return table.filter(pc.invert(pc.is_in(table.column(column), value_set=value_set)))


def having(table: pa.Table, column: str, values: Collection[str]) -> pa.Table:
    """The rows of ``table`` whose ``column`` is in ``values``."""
    value_set = pa.array(sorted(values), pa.string())
    return table.filter(pc.is_in(table.column(column), value_set=value_set))


def iter_file(path: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """A Parquet file as chunks of at most :data:`CHUNK_ROWS` rows of its own schema (only
    ``columns``, if given, in that order).

    pyarrow (25) cannot read back a fixed-size list column holding nulls (the embedding of
    a --no_embeddings run, or of a text whose embedding failed). A column with no vector at
    all (the Parquet statistics say so) is rebuilt as nulls; otherwise the file is read
    through DuckDB, which returns a variable list, rebuilt here as the fixed-size list of
    the file's schema (pyarrow's own cast of a mostly-null column is slow: docs/design.md).
    """
    with FileSystems.open(path) as fh:
        parquet = pq.ParquetFile(fh)
        full = parquet.schema_arrow
        schema = full if columns is None else pa.schema([full.field(c) for c in columns])
        fixed = [f.name for f in schema if _fixed_size_list(f)]
        if all(_all_null(parquet, name) for name in fixed):
            plain = [f.name for f in schema if f.name not in fixed]
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=plain):
                arrays = [
                    pa.nulls(batch.num_rows, f.type)
                    if f.name in fixed
                    else batch.column(batch.schema.get_field_index(f.name))
                    for f in schema
                ]
                yield pa.Table.from_arrays(arrays, schema=schema)
            return
    selected = ", ".join(f'"{name}"' for name in schema.names)
    with _local_copy(path) as local:
        connection = duckdb.connect(config={"threads": 1})  # it runs beside the pipeline
        try:
            relation = connection.sql(f"SELECT {selected} FROM read_parquet('{_quoted(local)}')")
            for batch in relation.to_arrow_reader(CHUNK_ROWS):
                yield conformed(pa.Table.from_batches([batch]), schema)
        finally:
            connection.close()


def conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (as DuckDB returns it) typed exactly as ``schema``: a variable list becomes
    the fixed-size list of the file, strings and dates take the schema's types."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        if _fixed_size_list(field):
            columns.append(_fixed_size(column, field.type))
        else:
            columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _fixed_size_list(field: pa.Field) -> bool:
    return pa.types.is_fixed_size_list(field.type)


def _all_null(parquet: pq.ParquetFile, column: str) -> bool:
    """Whether no row of ``column`` (a list column) holds a value, by the file's statistics."""
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            if chunk.path_in_schema.split(".")[0] != column:
                continue
            stats = chunk.statistics
            if stats is None or not stats.has_null_count or stats.null_count != chunk.num_values:
                return False
    return True


def _fixed_size(column: pa.ChunkedArray, type_: pa.FixedSizeListType) -> pa.Array:
    array = column.combine_chunks()
    if array.null_count == len(array):
        return pa.nulls(len(array), type_)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    values = np.zeros((len(array), type_.list_size), dtype=np.float32)
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    values[valid] = flat.reshape(-1, type_.list_size)
    mask = pa.array(~valid) if array.null_count else None
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), type=type_, mask=mask)


def _quoted(path: str) -> str:
    return path.replace("'", "''")


class _local_copy:
    """A local path for ``path`` (remote files are downloaded to a temporary file)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._temp: str | None = None

    def __enter__(self) -> str:
        if "://" not in self._path:
            return self._path
        handle, self._temp = tempfile.mkstemp(suffix=".parquet")
        with os.fdopen(handle, "wb") as out, FileSystems.open(self._path) as source:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        return self._temp

    def __exit__(self, *exc: object) -> None:
        if self._temp is not None:
            os.unlink(self._temp)


class RowGroupWriter:
    """Writes chunks of rows to one Parquet file in row groups of ROWS_PER_ROW_GROUP rows,
    holding at most one row group in memory; no rows, no file (unless ``keep_empty``)."""

    def __init__(self, path: str, keep_empty: bool = False) -> None:
        self._path = path
        self._keep_empty = keep_empty  # write a file even without rows (close(schema))
        self._handle = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        self._pending.append(rows)
        self._buffered += rows.num_rows
        self.rows += rows.num_rows
        if self._buffered >= ROWS_PER_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        if self._writer is None:
            self._handle = FileSystems.create(self._path)
            self._writer = pq.ParquetWriter(self._handle, table.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=ROWS_PER_ROW_GROUP)
        self._pending, self._buffered = [], 0

    def close(self, schema: pa.Schema | None = None) -> None:
        self._flush()
        if self._writer is None and self._keep_empty and schema is not None:
            self._pending = [schema.empty_table()]
            self._flush()
        if self._writer is not None:
            self._writer.close()
            self._handle.close()

    @property
    def written(self) -> bool:
        return self._writer is not None


def write_rows(table: pa.Table, path: str) -> None:
    """``table`` as one Parquet file (nothing when it has no rows)."""
    writer = RowGroupWriter(path)
    writer.write(table)
    writer.close()
