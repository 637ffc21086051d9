"""The commit log of an output directory: one record per published version, created only if
absent, listing every data file of that version.

    DIR/commits/00000003.json   {"version": 3, "root": "v000003-1f2e3d4c", "parent": 2,
                                 "files": {"records": [{"path", "bytes", "rows", "sha256"}]}}

Publishing version N creates ``commits/N.json`` and fails if it exists, so of two runs that
planned from the same version only the first to finish publishes; the other is refused with
nothing of it visible (optimistic concurrency, as in Apache Iceberg and Delta Lake). Locally a
complete temporary file is hard-linked to the name (``link`` fails if the name exists; an
``O_EXCL`` create would show a half-written file); on ``gs://`` the object is uploaded with
the precondition ``if_generation_match=0``. ``manifest.json`` is rewritten after each commit
for people and older readers, but the newest commit record is the truth: a crash between the
two leaves a committed version, not a lost one.

The file list lets a reader refuse a version whose files were deleted, truncated or replaced
(size and row count from each Parquet footer; SHA-256 for local files) instead of answering
from what is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError

COMMITS_DIR = "commits"
_COMMIT_NAME = re.compile(r"^(\d{8})\.json$")


class ConcurrentCommit(UserError):
    """Another run published the version this one meant to publish."""


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a version, relative to the output directory."""

    path: str
    bytes: int
    rows: int
    sha256: str | None  # None on object stores (reading every object back would be a copy)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "rows": self.rows, "sha256": self.sha256}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DataFile:
        path, size, rows = document["path"], document["bytes"], document["rows"]
        sha = document.get("sha256")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path:
            raise ValueError(f"lists a file path {path!r} outside the output")
        for name, value in (("bytes", size), ("rows", rows)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"lists {path} with {name} {value!r}")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ValueError(f"lists {path} with sha256 {sha!r}")
        return cls(path, size, rows, sha)


def commit_path(output: str, version: int) -> str:
    return FileSystems.join(output, COMMITS_DIR, f"{version:08d}.json")


def committed_versions(output: str) -> list[int]:
    """The versions with a commit record, oldest first."""
    directory = FileSystems.join(output, COMMITS_DIR)
    if "://" not in output:
        if not os.path.isdir(directory):
            return []
        names = os.listdir(directory)
    else:
        pattern = FileSystems.join(directory, "*.json")
        names = [m.path.rsplit("/", 1)[-1] for m in FileSystems.match([pattern])[0].metadata_list]
    return sorted(int(m.group(1)) for m in map(_COMMIT_NAME.match, names) if m)


def read_commit(output: str, version: int) -> dict[str, Any]:
    """The raw commit record of ``version`` (its shape is checked by the manifest reader)."""
    path = commit_path(output, version)
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))


def files_of(document: Mapping[str, Any]) -> dict[str, tuple[DataFile, ...]]:
    """The file list of a commit record; ``ValueError`` saying what is wrong with it."""
    files = document.get("files")
    if not isinstance(files, dict):
        raise ValueError('has no "files" object')
    listed: dict[str, tuple[DataFile, ...]] = {}
    for table, entries in files.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f'has "files" of {table!r} that is not a list of objects')
        try:
            listed[str(table)] = tuple(DataFile.from_json(e) for e in entries)
        except KeyError as missing:
            raise ValueError(f"lists a file of {table!r} without {missing}") from None
    return listed


def listing(output: str, version: int) -> dict[str, tuple[DataFile, ...]] | None:
    """The files the commit record of ``version`` lists (None: it has no record)."""
    if version not in committed_versions(output):
        return None
    return files_of(read_commit(output, version))


def describe_files(output: str, files: Mapping[str, list[str]]) -> dict[str, list[dict]]:
    """The file list for a record: each table's files (absolute paths inside ``output``)
    with their size, row count (from the Parquet footer) and, locally, SHA-256."""
    local = "://" not in output
    listed: dict[str, list[dict]] = {}
    for table, paths in files.items():
        entries = []
        for path in paths:
            with FileSystems.open(path) as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
            if local:
                size, sha = os.path.getsize(path), _sha256(path)
            else:
                size, sha = FileSystems.match([path])[0].metadata_list[0].size_in_bytes, None
            entries.append(DataFile(_relative(output, path), size, rows, sha).to_json())
        listed[table] = entries
    return listed


def _relative(output: str, path: str) -> str:
    prefix = output.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not inside {output}")
    return path[len(prefix) :]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(output: str, listed: Mapping[str, tuple[DataFile, ...]]) -> str | None:
    """The first problem with the listed files as they are now (missing, another size), or
    None. Cheap: one ``stat`` (or one listing) per file, no data read."""
    for files in listed.values():
        for entry in files:
            problem = _size_problem(output, entry)
            if problem is not None:
                return problem
    return None


def verify_files(output: str, listed: Mapping[str, tuple[DataFile, ...]]) -> list[str]:
    """Every problem with the listed files, reading each one in full (``digestflow verify``):
    missing, another size, a footer that does not parse or another row count, and, where it
    was recorded (local outputs), another SHA-256. Empty: every file is as it was written."""
    problems = []
    for files in listed.values():
        for entry in files:
            problem = _size_problem(output, entry) or _content_problem(output, entry)
            if problem is not None:
                problems.append(problem)
    return problems


def _path(output: str, entry: DataFile) -> str:
    return FileSystems.join(output, *entry.path.split("/"))


def file_size(path: str) -> int | None:
    """Bytes of the file at ``path`` (local, taken literally, or an object URI); None if it
    is not there."""
    if "://" not in path:
        try:
            return os.path.getsize(path)
        except OSError:
            return None
    matched = FileSystems.match([path])[0].metadata_list
    return matched[0].size_in_bytes if matched else None


def _size_problem(output: str, entry: DataFile) -> str | None:
    path = _path(output, entry)
    size = file_size(path)
    if size is None:
        return f"{path} is missing"
    if size != entry.bytes:
        return f"{path} has {size} bytes, not the {entry.bytes} it was written with"
    return None


def _content_problem(output: str, entry: DataFile) -> str | None:
    path = _path(output, entry)
    try:
        with FileSystems.open(path) as handle:
            rows = pq.ParquetFile(handle).metadata.num_rows
    except Exception as error:  # noqa: BLE001 - any unreadable footer is the same finding
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{path} is not a readable Parquet file ({reason})"
    if rows != entry.rows:
        return f"{path} holds {rows} rows, not the {entry.rows} it was written with"
    if entry.sha256 is not None and _sha256(path) != entry.sha256:
        return f"{path} has another SHA-256 than the one it was written with"
    return None


def create(output: str, version: int, document: Mapping[str, Any]) -> None:
    """Create the commit record of ``version``, only if there is none; else
    :class:`ConcurrentCommit`. The record appears whole or not at all."""
    payload = json.dumps(document, indent=1, sort_keys=True, default=str).encode("utf-8")
    target = commit_path(output, version)
    if "://" in output:
        _create_remote(target, payload, version)
    else:
        _create_local(target, payload, version)


def _lost(version: int) -> ConcurrentCommit:
    return ConcurrentCommit(
        f"another run published version {version} of this output while this one ran, so "
        "nothing of this run was published; run it again (it will build on that version)"
    )


def _create_local(target: str, payload: bytes, version: int) -> None:
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".commit-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(scratch, target)  # atomic, and refuses an existing name
        except FileExistsError:
            raise _lost(version) from None
    finally:
        os.unlink(scratch)


def _create_remote(target: str, payload: bytes, version: int) -> None:
    """Beam's FileSystems has no preconditions: the GCS client's conditional create does it."""
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    if not target.startswith("gs://"):
        raise UserError(f"{target}: only local paths and gs:// can be published atomically")
    bucket, _, name = target[len("gs://") :].partition("/")
    blob = storage.Client().bucket(bucket).blob(name)
    try:
        blob.upload_from_string(payload, content_type="application/json", if_generation_match=0)
    except PreconditionFailed:
        # A retried upload whose first attempt landed fails its precondition too: it is this
        # writer's record when the bytes (they hold a per-run token) are ours.
        if blob.download_as_bytes() != payload:
            raise _lost(version) from None
