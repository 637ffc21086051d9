"""Plan an update and write what supersedes the previous version, beside the pipeline.

An update (``--incremental``) clusters only the affected part of the corpus
(:mod:`transforms.incremental.part`); every other row of the previous version is still right
and stays where it is: the new version lists the previous version's files as they are
(:mod:`beam_jobs.store.tables`, superseded rows). What this module writes while the pipeline
runs (:class:`BackgroundUpdate`) is proportional to the day, not to the corpus:

* a delete file per table naming what the part replaces: ``records`` and ``clusters`` of the
  part's clusters (and of the clusters joined copies grow), ``lsh_bands`` of its texts,
  ``paper_names`` of its records, ``dead_letter`` and ``inputs`` of dumps read again;
* the rows joined copies add or change (their records rows, grown clusters, their names).

Those rows are staged under ``ROOT/_joined/`` and moved into the tables when the pipeline has
finished (the pipeline's own writers create the table directories meanwhile).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.incremental.part import PartVectors, find_part
from beam_jobs.store import versions
from beam_jobs.store.rows import RowGroupWriter, write_rows
from beam_jobs.store.tables import (
    DELETE_KEYS,
    file_schema,
    iter_table,
    select_rows,
    write_deletes,
    written_files,
)
from transforms.dedup.duplicates import DedupConfig
from transforms.enrich.embed import EmbedConfig
from transforms.enrich.semantic.evidence import names_row_of
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.incremental.joined import JoinedCopy, grown_cluster, joined_row
from transforms.incremental.part import UpdatePart
from transforms.incremental.read_back import RECORD_COLUMNS
from transforms.schema import RECORDS_SCHEMA, TABLES, to_table

STAGING = "_joined"
PART_FILE = "update_part.json"  # the part clustered again, kept in the version for inspection
KEPT_WHOLE = ("embeddings", "dead_letter", "inputs")  # kept even when all is clustered again
BY_SOURCE_FILE = ("dead_letter", "inputs")  # rows of one dump, replaced when it is read again


def excluded_values(table: str, affected: UpdatePart) -> frozenset[str]:
    """The values of ``DELETE_KEYS[table]`` whose rows the part writes anew."""
    if table in ("records", "clusters"):
        return affected.cluster_ids
    if table == "lsh_bands":
        return affected.content_hashes
    if table == "paper_names":
        return affected.record_ids
    return frozenset()


def kept_tables(everything: bool) -> tuple[str, ...]:
    """The tables whose previous files the new version lists: all, unless the previous
    version had no update index and ``everything`` is clustered again."""
    return KEPT_WHOLE if everything else tuple(TABLES)


def extract_part_records(previous_root: str, affected: UpdatePart, path: str) -> int:
    """Write the previous version's live records of the affected part (the columns the job
    reads back, :data:`transforms.incremental.read_back.RECORD_COLUMNS`) to one file; returns
    how many. Only those columns are read (not the embeddings), and with the part's filter
    pushed into the scan."""
    writer = RowGroupWriter(path, keep_empty=True)
    if affected.everything:
        for chunk in iter_table(previous_root, "records", RECORD_COLUMNS):
            writer.write(chunk)
    elif affected.cluster_ids:
        # before the job starts (it waits for the part): every core
        part = select_rows(
            previous_root,
            "records",
            RECORD_COLUMNS,
            "cluster_id",
            affected.cluster_ids,
            threads=os.cpu_count() or 1,
        )
        writer.write(part)
    writer.close(pa.schema([RECORDS_SCHEMA.field(name) for name in RECORD_COLUMNS]))
    return writer.rows


def joined_rows(previous_root: str, table: str, joined: Sequence[JoinedCopy]) -> pa.Table | None:
    """The rows ``joined`` copies add to ``table`` (records, paper_names) or write anew
    (clusters, grown); None when they touch no row of it."""
    if not joined or table not in ("records", "clusters", "paper_names"):
        return None
    if table == "paper_names":
        found = [
            names_row_of(j.record.record_id, j.record.title, j.record.abstract, False)
            for j in joined
        ]
        return to_table(found, TABLES[table])
    if table == "records":
        # only the columns a joined row takes from its template (its vector and tags)
        columns = ["record_id", "embedding", "tags", "tag_scores"]
        templates = _live_rows(previous_root, table, columns, {j.template for j in joined})
        schema = file_schema(previous_root, table)
        return to_table(
            [joined_row(j, _template(templates, table, j.template)) for j in joined], schema
        )
    clusters = _live_rows(previous_root, table, None, {j.cluster_id for j in joined})
    dates: dict[str, list] = {}
    for j in joined:
        dates.setdefault(j.cluster_id, []).append(j.record.digest_date)
    found = [
        grown_cluster(_template(clusters, table, cluster), cluster_dates)
        for cluster, cluster_dates in sorted(dates.items())
    ]
    return to_table(found, TABLES[table])


def _live_rows(root: str, table: str, columns: list[str] | None, keys: set[str]) -> dict[str, dict]:
    """The live rows of ``table`` whose first key column (record_id, cluster_id) is in
    ``keys``, by key."""
    column = "record_id" if table == "records" else "cluster_id"
    names = columns if columns is not None else TABLES[table].names
    rows = select_rows(root, table, names, column, keys)
    return {row[column]: row for row in rows.to_pylist()}


def _template(rows: Mapping[str, dict], table: str, key: str) -> dict:
    """The old row a joined copy's row is made from; the plan found it in the same version,
    so a miss means the version changed under the planner."""
    try:
        return rows[key]
    except KeyError:
        raise RuntimeError(
            f"{table}: row {key!r} that the update plan relies on is missing from the "
            "previous version (was it modified during the update?)"
        ) from None


def supersede(
    previous_root: str,
    root: str,
    staging: str,
    affected: UpdatePart,
    joined: Sequence[JoinedCopy] = (),
    retried: Sequence[str] = (),
) -> dict[str, int]:
    """Write the delete files of version ``root`` and stage the rows joined copies add or
    change (see the module docstring). Returns the rows carried unchanged from the previous
    version (records, clusters; a grown cluster counts) and the joined copies written."""
    grown = {j.cluster_id for j in joined}
    for table in DELETE_KEYS:
        keys = set(excluded_values(table, affected))
        if table == "clusters":
            keys |= grown
        if table in BY_SOURCE_FILE:
            keys |= set(retried)
        if table in kept_tables(affected.everything):
            write_deletes(root, table, keys)
        added = joined_rows(previous_root, table, joined)
        if added is not None and added.num_rows:
            directory = FileSystems.join(staging, table)
            if not versions.is_remote(directory):
                os.makedirs(directory, exist_ok=True)
            write_rows(added, FileSystems.join(directory, "joined-00000.parquet"))
    if affected.everything:
        return {"records": 0, "clusters": 0, "joined_copies": len(joined)}
    return {
        "records": affected.previous_records - len(affected.record_ids),
        "clusters": affected.previous_clusters - len(affected.cluster_ids),
        "joined_copies": len(joined),
    }


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


def _plan_and_supersede(channel, request: UpdateRequest, in_child: bool = False) -> None:
    """The background half of an update: plan the affected part, write it where the
    pipeline's DoFns read it, report, then write what supersedes the previous version."""
    try:
        vectors = request.part_vectors()
        affected, joined = request.find_part(vectors)
        if vectors is not None:
            vectors.write(request.planned_embeddings)
        with FileSystems.create(request.part_file) as fh:
            fh.write(affected.to_json().encode())
        extract_part_records(request.previous_root, affected, request.part_records)
        channel.send(("planned", affected.sizes()))
        if in_child:
            # The rest has until the job ends and must not slow it down (the update's time
            # is the job's): one core, lower priority. Planning runs at full speed, to be
            # ready before the job graph is built.
            pa.set_cpu_count(1)
            pa.set_io_thread_count(1)
            os.nice(10)
        unchanged = supersede(
            request.previous_root,
            request.root,
            request.staging,
            affected,
            joined,
            request.retried,
        )
        channel.send(("written", unchanged))
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
    embed: EmbedConfig | None = None

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

    @property
    def planned_embeddings(self) -> str | None:
        """The vectors the plan embeds (vector blocking keys; None without them), a known
        ``embeddings`` file to the job and then one of the version's."""
        if self.embed is None or self.semantic is None or not self.semantic.vectors.enabled:
            return None
        return FileSystems.join(self.staging, "embeddings", "planned-00000.parquet")

    def part_vectors(self) -> PartVectors | None:
        if self.planned_embeddings is None:
            return None
        return PartVectors(self.previous_root, self.embed, self.semantic)

    def find_part(self, vectors: PartVectors | None = None) -> tuple[UpdatePart, list[JoinedCopy]]:
        return find_part(
            self.previous_root,
            list(self.new_files),
            self.dedup,
            self.semantic,
            self.digest_year,
            vectors,
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
                target=_plan_and_supersede, args=(sender, self.request, True), daemon=True
            )
            self._worker.start()
            sender.close()
        else:
            self._channel = _Queue()
            self._worker = threading.Thread(
                target=_plan_and_supersede, args=(self._channel, self.request), daemon=True
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
        """Wait for the background half, move the rows it staged into the tables; returns
        the rows carried unchanged (records, clusters) and the joined copies written."""
        unchanged = self._receive("written")
        self._join()
        staging = self.request.staging
        for table in TABLES:
            staged = written_files(staging, table)
            if not staged:
                continue
            target = FileSystems.join(self.request.root, table)
            if not versions.dir_exists(target) and not versions.is_remote(target):
                os.makedirs(target, exist_ok=True)
            staged = _without_empty(staged)
            names = [FileSystems.join(target, p.rsplit("/", 1)[-1]) for p in staged]
            FileSystems.rename(staged, names)
        versions.delete_dir(staging)
        return unchanged


def _without_empty(files: list[str]) -> list[str]:
    """The staged files that hold rows (the plan's embeddings file is written even when it
    embedded nothing, and a version lists no empty file)."""
    kept = []
    for path in files:
        with FileSystems.open(path) as fh:
            if pq.ParquetFile(fh).metadata.num_rows:
                kept.append(path)
                continue
        FileSystems.delete([path])
    return kept
