"""Plan an update and copy what it did not touch, beside the pipeline.

An update (``--incremental``) clusters only the affected part of the corpus
(:mod:`transforms.incremental.part`); every other row of the previous version is still right and is
copied here, table by table, while the pipeline runs (:class:`BackgroundUpdate`):

* ``records``, ``clusters``: rows of clusters outside the affected part;
* ``lsh_bands``: texts outside it; ``paper_names``: records outside it;
* ``embeddings``, ``dead_letter``, ``inputs``: everything (the pipeline adds the new rows).

Files are staged under ``ROOT/_carried/`` and moved into the tables when the pipeline has
finished (the pipeline's own writers create the table directories meanwhile).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.incremental.part import find_part
from beam_jobs.store import versions
from beam_jobs.store.tables import table_files, written_files
from transforms.dedup.duplicates import DedupConfig
from transforms.enrich.semantic.evidence import names_row_of
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.incremental.joined import JoinedCopy, grown_cluster, joined_row
from transforms.incremental.part import UpdatePart
from transforms.incremental.read_back import RECORD_COLUMNS
from transforms.schema import RECORDS_SCHEMA, ROWS_PER_ROW_GROUP, TABLES, to_table

STAGING = "_carried"
CHUNK_ROWS = 16384  # rows read, filtered and buffered at a time
PART_FILE = "update_part.json"  # the part clustered again, kept in the version for inspection
COPIED_WHOLE = ("embeddings", "dead_letter", "inputs")
BY_SOURCE_FILE = ("dead_letter", "inputs")  # rows of one dump, dropped when it is read again
# table -> the column whose value decides whether a row belongs to the affected part
FILTERED_BY = {
    "records": "cluster_id",
    "clusters": "cluster_id",
    "lsh_bands": "content_hash",
    "paper_names": "record_id",
}


def excluded_values(table: str, affected: UpdatePart) -> frozenset[str]:
    """The values of ``FILTERED_BY[table]`` whose rows the update writes anew."""
    if table in ("records", "clusters"):
        return affected.cluster_ids
    if table == "lsh_bands":
        return affected.content_hashes
    return affected.record_ids


def without(table: pa.Table, column: str, values: frozenset[str]) -> pa.Table:
    """``table`` less the rows whose ``column`` is in ``values``."""
    if not values or table.num_rows == 0:
        return table
    value_set = pa.array(sorted(values), pa.string())
    return table.filter(pc.invert(pc.is_in(table.column(column), value_set=value_set)))


def iter_records_file(path: str) -> Iterator[pa.Table]:
    """A ``records`` file as chunks of at most :data:`CHUNK_ROWS` rows of its own schema.

    pyarrow (25) cannot read back a fixed-size list column holding nulls (the embedding of
    a --no_embeddings run, or of a text whose embedding failed). A column with no vector at
    all (the Parquet statistics say so) is rebuilt as nulls; otherwise the file is read
    through DuckDB, which returns a variable list, rebuilt here as the fixed-size list of
    the file's schema (pyarrow's own cast of a mostly-null column is slow: docs/design.md).
    """
    with FileSystems.open(path) as fh:
        parquet = pq.ParquetFile(fh)
        schema = parquet.schema_arrow
        fixed = [f.name for f in schema if _fixed_size_list(f)]
        if all(_all_null(parquet, name) for name in fixed):
            columns = [f.name for f in schema if f.name not in fixed]
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                arrays = [
                    pa.nulls(batch.num_rows, f.type)
                    if f.name in fixed
                    else batch.column(batch.schema.get_field_index(f.name))
                    for f in schema
                ]
                yield pa.Table.from_arrays(arrays, schema=schema)
            return
    with _local_copy(path) as local:
        connection = duckdb.connect(config={"threads": 1})  # it runs beside the pipeline
        try:
            relation = connection.sql(f"SELECT * FROM read_parquet('{_quoted(local)}')")
            for batch in relation.to_arrow_reader(CHUNK_ROWS):
                yield _conformed(pa.Table.from_batches([batch]), schema)
        finally:
            connection.close()


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
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
        if not versions.is_remote(self._path):
            return self._path
        handle, self._temp = tempfile.mkstemp(suffix=".parquet")
        with os.fdopen(handle, "wb") as out, FileSystems.open(self._path) as source:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        return self._temp

    def __exit__(self, *exc: object) -> None:
        if self._temp is not None:
            os.unlink(self._temp)


def _iter_file(path: str) -> Iterator[pa.Table]:
    with FileSystems.open(path) as fh:
        parquet = pq.ParquetFile(fh)
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield pa.Table.from_batches([batch], schema=parquet.schema_arrow)


class _RowGroupWriter:
    """Writes chunks of rows to one Parquet file in row groups of ROWS_PER_ROW_GROUP rows,
    holding at most one row group in memory; no rows, no file."""

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


def _write(table: pa.Table, path: str) -> None:
    writer = _RowGroupWriter(path)
    writer.write(table)
    writer.close()


def carry_table(
    previous_root: str,
    staging: str,
    table: str,
    affected: UpdatePart,
    joined: Sequence[JoinedCopy] = (),
    retried: Sequence[str] = (),
) -> int:
    """Copy one table's unaffected rows into ``staging/table/``, with the rows the
    ``joined`` copies add or change; returns the rows carried from the previous version
    (a grown cluster counts, a joined copy's own row does not). ``retried``: dumps read
    again, whose ``inputs`` and ``dead_letter`` rows the update writes anew."""
    copied = 0
    target = FileSystems.join(staging, table)
    if not versions.is_remote(target):
        os.makedirs(target, exist_ok=True)
    additions = _Additions(table, joined)
    for index, path in enumerate(table_files(previous_root, table)):
        destination = FileSystems.join(target, f"carried-{index:05d}.parquet")
        if table in COPIED_WHOLE and not (retried and table in BY_SOURCE_FILE):
            FileSystems.copy([path], [destination])
            continue
        if table in BY_SOURCE_FILE:
            writer = _RowGroupWriter(destination)
            for chunk in _iter_file(path):
                writer.write(without(chunk, "source_file", frozenset(retried)))
            writer.close()
            continue
        if affected.everything:
            continue
        chunks = iter_records_file(path) if table == "records" else _iter_file(path)
        writer = _RowGroupWriter(destination)
        excluded = excluded_values(table, affected)
        for chunk in chunks:
            writer.write(additions.take(without(chunk, FILTERED_BY[table], excluded)))
        writer.close()
        copied += writer.rows
    added = additions.rows()
    if added is not None and added.num_rows:
        _write(added, FileSystems.join(target, "joined-00000.parquet"))
        if table == "clusters":  # old clusters, grown: still carried
            copied += added.num_rows
    return copied


def extract_part_records(previous_root: str, affected: UpdatePart, path: str) -> int:
    """Write the previous version's records of the affected part (the columns the job
    reads back, :data:`transforms.incremental.read_back.RECORD_COLUMNS`) to one file; returns how many.
    Only those columns are read (not the embeddings)."""
    writer = _RowGroupWriter(path, keep_empty=True)
    value_set = pa.array(sorted(affected.cluster_ids), pa.string())
    for source in table_files(previous_root, "records"):
        with FileSystems.open(source) as fh:
            parquet = pq.ParquetFile(fh)
            columns = [*RECORD_COLUMNS, "cluster_id"]
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                chunk = pa.Table.from_batches([batch])
                if not affected.everything:
                    chunk = chunk.filter(pc.is_in(chunk["cluster_id"], value_set=value_set))
                writer.write(chunk.select(RECORD_COLUMNS))
    writer.close(pa.schema([RECORDS_SCHEMA.field(name) for name in RECORD_COLUMNS]))
    return writer.rows


class _Additions:
    """What joined copies (:func:`transforms.incremental.part.joined_copies`) do to a table:
    ``records`` gains their rows (vector and tags taken from a row of their cluster),
    ``clusters`` grows theirs, ``paper_names`` gains their names."""

    def __init__(self, table: str, joined: Sequence[JoinedCopy]) -> None:
        self._table = table
        self._joined = list(joined) if table in ("records", "clusters", "paper_names") else []
        self._templates: dict[str, dict] = {}
        self._schema: pa.Schema | None = None

    def take(self, rows: pa.Table) -> pa.Table:
        """Note what ``rows`` (unaffected rows of one file) give the joined copies, and
        return the rows to copy (clusters rows that grew are taken out: :meth:`rows`
        writes them)."""
        if not self._joined:
            return rows
        self._schema = rows.schema
        if self._table == "records":
            wanted = {j.template for j in self._joined}
            for row in _rows_with(rows, "record_id", wanted).to_pylist():
                self._templates[row["record_id"]] = row
            return rows
        if self._table == "clusters":
            grown = {j.cluster_id for j in self._joined}
            for row in _rows_with(rows, "cluster_id", grown).to_pylist():
                self._templates[row["cluster_id"]] = row
            return without(rows, "cluster_id", frozenset(grown))
        return rows

    def rows(self) -> pa.Table | None:
        """The rows the joined copies add (records, names) or change (clusters)."""
        if not self._joined or self._schema is None:
            return None  # nothing joined, or no such table (paper_names without merging)
        if self._table == "records":
            found = [joined_row(j, self._template(j.template)) for j in self._joined]
        elif self._table == "clusters":
            dates: dict[str, list] = {}
            for j in self._joined:
                dates.setdefault(j.cluster_id, []).append(j.record.digest_date)
            found = [
                grown_cluster(self._template(cluster), cluster_dates)
                for cluster, cluster_dates in sorted(dates.items())
            ]
        else:
            found = [
                names_row_of(j.record.record_id, j.record.title, j.record.abstract, False)
                for j in self._joined
            ]
        return to_table(found, self._schema)

    def _template(self, key: str) -> dict:
        """The old row a joined copy's row is made from; the plan found it in the same
        version, so a miss means the version changed under the planner."""
        try:
            return self._templates[key]
        except KeyError:
            raise RuntimeError(
                f"{self._table}: row {key!r} that the update plan relies on is missing from "
                "the previous version (was it modified during the update?)"
            ) from None


def _rows_with(table: pa.Table, column: str, values: set[str]) -> pa.Table:
    value_set = pa.array(sorted(values), pa.string())
    return table.filter(pc.is_in(table.column(column), value_set=value_set))


def carry_tables(
    previous_root: str,
    staging: str,
    affected: UpdatePart,
    joined: Sequence[JoinedCopy] = (),
    retried: Sequence[str] = (),
) -> dict[str, int]:
    """:func:`carry_table` for every table; ``joined_copies``: the joined copies written."""
    copied = {
        table: carry_table(previous_root, staging, table, affected, joined, retried)
        for table in TABLES
    }
    copied["joined_copies"] = len(joined)
    return copied


class _Queue:
    """The thread fallback's channel, with a Pipe's send/recv."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def send(self, message: object) -> None:
        self._queue.put(message)

    def recv(self) -> object:
        return self._queue.get()

    def close(self) -> None:
        pass


def _plan_and_carry(channel, request: UpdateRequest, in_child: bool = False) -> None:
    """The background half of an update: plan the affected part, write it where the
    pipeline's DoFns read it, report, then copy everything else."""
    try:
        affected, joined = request.find_part()
        with FileSystems.create(request.part_file) as fh:
            fh.write(affected.to_json().encode())
        extract_part_records(request.previous_root, affected, request.part_records)
        channel.send(("planned", affected.sizes()))
        if in_child:
            # The copy has until the job ends and must not slow it down (the update's time
            # is the job's): one core, lower priority. Planning runs at full speed, to be
            # ready before the job graph is built.
            pa.set_cpu_count(1)
            pa.set_io_thread_count(1)
            os.nice(10)
        copied = carry_tables(
            request.previous_root, request.staging, affected, joined, request.retried
        )
        channel.send(("copied", copied))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        try:
            channel.send(("error", error))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            channel.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        channel.close()


@dataclass(frozen=True)
class UpdateRequest:
    """What the background half of an update needs (picklable, and cheap to fork with)."""

    previous_root: str
    root: str
    new_files: tuple[str, ...]
    dedup: DedupConfig
    semantic: SemanticConfig | None
    digest_year: int | None
    retried: tuple[str, ...] = ()  # dumps read again: their old inputs/dead_letter rows go

    @property
    def part_file(self) -> str:
        return FileSystems.join(self.root, PART_FILE)

    @property
    def part_records(self) -> str:
        """The records the pipeline clusters again (removed when the copy is moved in)."""
        return FileSystems.join(self.root, STAGING, "part-records.parquet")

    @property
    def staging(self) -> str:
        return FileSystems.join(self.root, STAGING)

    def find_part(self) -> tuple[UpdatePart, list[JoinedCopy]]:
        return find_part(
            self.previous_root, list(self.new_files), self.dedup, self.semantic, self.digest_year
        )


class BackgroundUpdate:
    """The part of an update that runs beside the pipeline, in a forked process where the
    platform has ``fork`` (else in a thread): planning the affected part
    (:func:`beam_jobs.incremental.part.find_part`) while the job graph is built, then copying what
    it does not touch while the job runs. Both are Arrow, Parquet and Python work that would
    otherwise add to the update's time, or compete with the in-process pipeline for the GIL.

    The plan reaches the pipeline as a file (``part_file``): its DoFns read it in
    ``setup()``, so the graph can be built before the plan exists. Call
    :meth:`wait_planned` before running the job, :meth:`finish` after it.
    """

    def __init__(self, request: UpdateRequest) -> None:
        self.request = request
        self.part_file = request.part_file
        self.part_records = request.part_records
        self._channel = None
        self._worker: threading.Thread | multiprocessing.process.BaseProcess | None = None

    def start(self) -> BackgroundUpdate:
        if "fork" in multiprocessing.get_all_start_methods():
            # Objects that exist now are shared with the child copy-on-write; keep the
            # parent's garbage collector from touching (and so copying) their pages while
            # the child lives (the parent goes on to build the job graph: on the bench's
            # day ~15k fewer page faults, 111k against 127k).
            gc.freeze()
            context = multiprocessing.get_context("fork")
            receiver, sender = context.Pipe(duplex=False)
            self._channel = receiver
            self._worker = context.Process(
                target=_plan_and_carry, args=(sender, self.request, True), daemon=True
            )
            self._worker.start()
            sender.close()
        else:
            self._channel = _Queue()
            self._worker = threading.Thread(
                target=_plan_and_carry, args=(self._channel, self.request), daemon=True
            )
            self._worker.start()
        return self

    def _receive(self, expected: str) -> object:
        try:
            kind, value = self._channel.recv()
        except EOFError:
            kind, value = "error", RuntimeError("the update's background process died")
        if kind == "error":
            self._join()
            raise value
        assert kind == expected, (kind, expected)
        return value

    def _join(self) -> None:
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        gc.unfreeze()  # the child is gone: nothing is shared any more

    def wait_planned(self) -> dict[str, int]:
        """Sizes of the affected part, once it is planned (raises what planning raised)."""
        return self._receive("planned")

    def abandon(self) -> None:
        """Stop waiting for the copy (the run failed; its version is never published)."""
        if self._worker is not None:
            if isinstance(self._worker, threading.Thread):
                self._worker.join()
            else:
                self._worker.terminate()
                self._worker.join()
            self._worker = None
        gc.unfreeze()

    def finish(self) -> dict[str, int]:
        """Wait for the copy, move its files into the tables; rows copied per table."""
        copied = self._receive("copied")
        self._join()
        staging = self.request.staging
        for table in TABLES:
            staged = written_files(staging, table)
            if not staged:
                continue
            target = FileSystems.join(self.request.root, table)
            if not versions.dir_exists(target) and not versions.is_remote(target):
                os.makedirs(target, exist_ok=True)
            names = [FileSystems.join(target, p.rsplit("/", 1)[-1]) for p in staged]
            FileSystems.rename(staged, names)
        versions.delete_dir(staging)
        return copied
