"""``digestflow compact DIR``: rewrite the live rows of the current version into fresh files.

An update lists the previous version's files as they are and supersedes rows through delete
files (:mod:`beam_jobs.store.tables`), so after many updates a table is many small files and
every read filters out rows later versions replaced. Compaction reads each table's live rows
(in bounded chunks) into one new version that lists only its own files and no delete
files, and publishes it like any run: the commit is created only if absent, so a compaction
racing an update loses (or wins) cleanly, and nothing of the loser is visible. Its rows are
the current version's, row for row; only the files change. Once the versions that list the
older files are retired (``--keep_versions``), their directories are deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.store import versions
from beam_jobs.store.commits import ConcurrentCommit
from beam_jobs.store.rows import RowGroupWriter
from beam_jobs.store.tables import (
    file_schema,
    finalize_tables,
    iter_table,
    listing_manifest,
    read_table,
    table_dir,
    table_files,
    table_slices,
)
from transforms.schema import TABLES


@dataclass(frozen=True)
class Compacted:
    """What ``compact`` did: the version it read, the one it published (None: nothing to
    do), and per table the files before and after and the live rows."""

    source: int
    version: int | None
    tables: dict[str, tuple[int, int, int]]  # table -> (files before, files after, rows)


def needs_compaction(root: str) -> bool:
    """Whether version ``root`` lists files of earlier versions or any delete file."""
    own = root.rstrip("/") + "/"
    for table in TABLES:
        for part in table_slices(root, table):
            if part.deletes or not all(path.startswith(own) for path in part.files):
                return True
    return False


def compact(output: str, keep: int = versions.KEEP_VERSIONS) -> Compacted:
    """Compact the current version of ``output`` (see the module docstring); a
    :class:`~beam_jobs.store.commits.ConcurrentCommit` if another run published first."""
    manifest = versions.current_manifest(output)
    if "files" not in manifest.extra:
        raise UserError(
            f"{output} was written before digestflow kept a commit log; an update or a "
            "rebuild with --overwrite writes one, then it can be compacted"
        )
    root = versions.verified_root(output, manifest)
    before = {table: len(table_files(root, table)) for table in TABLES}
    if not needs_compaction(root):
        rows = {t: _live_rows(root, t) for t in TABLES}
        tables = {t: (before[t], before[t], rows[t]) for t in TABLES if before[t]}
        return Compacted(manifest.version, None, tables)
    version = manifest.version + 1
    target = FileSystems.join(output, versions.attempt_name(version))
    try:
        rows = {t: _rewrite(root, target, t) for t in TABLES if before[t]}
        finalize_tables(target)
        _write_summary(root, target, manifest.version)
        extra = {
            "settings": manifest.extra.get("settings"),
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "compacted_from": manifest.version,
            "keep_versions": keep,
        }
        versions.publish(output, listing_manifest(output, version, target, extra))
    except BaseException:
        with contextlib.suppress(OSError):  # never published: nobody reads it
            versions.delete_dir(target)
        raise
    versions.retire_versions(output, version, keep=keep)
    after = {t: len(table_files(target, t)) for t in TABLES}
    return Compacted(
        manifest.version,
        version,
        {t: (before[t], after[t], rows[t]) for t in TABLES if t in rows},
    )


def _rewrite(root: str, target: str, table: str) -> int:
    """The live rows of ``table`` in ``root`` as one file in ``target``; returns how many."""
    directory = table_dir(target, table)
    if not versions.is_remote(directory):
        os.makedirs(directory, exist_ok=True)
    writer = RowGroupWriter(FileSystems.join(directory, "part-00000.parquet"), keep_empty=True)
    for chunk in iter_table(root, table):
        writer.write(chunk)
    writer.close(file_schema(root, table))
    return writer.rows


def _live_rows(root: str, table: str) -> int:
    return read_table(root, table, [TABLES[table].names[0]]).num_rows


def _write_summary(root: str, target: str, source: int) -> None:
    """The compacted version's run summary: the one it was compacted from (the counts the
    readers check hold for it row for row), saying so."""
    path = FileSystems.join(root, versions.SUMMARY_FILE)
    try:
        with FileSystems.open(path) as handle:
            summary = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        summary = {}
    summary = {**summary, "compacted_from": source}
    with FileSystems.create(FileSystems.join(target, versions.SUMMARY_FILE)) as handle:
        handle.write(json.dumps(summary, indent=2, default=str).encode())


__all__ = ["Compacted", "ConcurrentCommit", "compact", "needs_compaction"]
