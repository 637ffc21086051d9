"""Parquet through Beam's file systems (local or gs://): the Beam sink that writes a table's
rows with an explicit schema and large row groups, and reading or writing one whole file."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.value_provider import StaticValueProvider

from transforms.schema import ROWS_PER_ROW_GROUP

# Rows are turned into Arrow batches this often, so the buffer holds Arrow data, not dicts.
ARROW_BATCH_ROWS = 8192


def read_parquet_file(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (only ``columns``, if given)."""
    with FileSystems.open(path) as fh:
        # ParquetFile, not pq.read_table: that one imports pyarrow.dataset (~0.2 s) first
        return pq.ParquetFile(fh).read(columns=columns)


def write_parquet_file(table: pa.Table, path: str) -> None:
    """One Parquet file with the sink's settings (zstd, row groups of ROWS_PER_ROW_GROUP)."""
    with FileSystems.create(path) as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=ROWS_PER_ROW_GROUP)


class ParquetSink(fileio.FileSink):
    """A FileSink writing row groups of ``rows_per_row_group`` rows (DuckDB scans row groups
    in parallel; tiny ones cost per-group overhead, huge ones cost writer memory)."""

    def __init__(self, schema: pa.Schema, rows_per_row_group: int = ROWS_PER_ROW_GROUP) -> None:
        self._schema = schema
        self._rows_per_row_group = rows_per_row_group
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self._buffered = 0

    def open(self, fh) -> None:
        self._writer = pq.ParquetWriter(fh, self._schema, compression="zstd")
        self._rows, self._batches, self._buffered = [], [], 0

    def write(self, record: dict[str, Any] | pa.RecordBatch) -> None:
        """One row, or a whole Arrow batch of rows (written as it is, no per-row cost)."""
        if isinstance(record, pa.RecordBatch):
            self._to_batch()
            self._batches.append(record)
            self._buffered += record.num_rows
        else:
            self._rows.append(record)
            if len(self._rows) >= ARROW_BATCH_ROWS:
                self._to_batch()
        if self._buffered >= self._rows_per_row_group:
            self._write_row_group()

    def flush(self) -> None:
        # WriteToFiles calls flush() right before closing the file: finish the Parquet footer.
        self._write_row_group()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _to_batch(self) -> None:
        if self._rows:
            self._batches.append(pa.RecordBatch.from_pylist(self._rows, schema=self._schema))
            self._buffered += len(self._rows)
            self._rows = []

    def _write_row_group(self) -> None:
        self._to_batch()
        if self._batches and self._writer is not None:
            table = pa.Table.from_batches(self._batches, schema=self._schema)
            self._writer.write_table(table, row_group_size=self._rows_per_row_group)
        self._batches, self._buffered = [], 0


class WriteParquetTable(beam.PTransform):
    """Rows (dicts, or ``pa.RecordBatch`` es of ``schema``) -> ``directory/part-*.parquet``
    conforming to ``schema``."""

    def __init__(
        self,
        directory: str,
        schema: pa.Schema,
        temp_directory: str,
        shards: int = 4,
        rows_per_row_group: int = ROWS_PER_ROW_GROUP,
    ) -> None:
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._temp_directory = temp_directory
        self._shards = shards
        self._rows_per_row_group = rows_per_row_group

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        schema, rows_per_group = self._schema, self._rows_per_row_group
        return rows | "WriteFiles" >> fileio.WriteToFiles(
            path=self._directory,
            file_naming=fileio.default_file_naming("part", ".parquet"),
            sink=lambda _destination: ParquetSink(schema, rows_per_group),
            shards=self._shards,
            temp_directory=StaticValueProvider(str, self._temp_directory),
        )
