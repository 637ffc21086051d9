"""Where a digestflow output directory keeps its tables.

An output directory holds immutable *versions* side by side and one small manifest that
names the current version::

    DIR/manifest.json            {"format": 1, "version": 3, "root": "v000003", "settings": ...}
    DIR/v000003/records/         *.parquet
    DIR/v000003/clusters/
    DIR/v000003/dead_letter/
    DIR/v000003/run_summary.json

A run or an update writes a new version beside the current one and then replaces the
manifest (an atomic rename locally; a single-object upload on GCS), so readers see the old
version or the new one, never a mix. Every reader resolves table paths through this module,
reading the manifest once per use; a manifest that is not one, or that names a version
directory that is gone, is refused with a message naming the file and how to recover.

Local paths are taken literally (``os``, ``shutil``): Beam's ``FileSystems`` matches
``delete`` and ``match`` arguments as globs, so an output named ``out[1]`` would not be
found. ``FileSystems`` serves the remote (``gs://``) paths.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.store import commits
from transforms.schema import TABLES

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "run_summary.json"
MANIFEST_FORMAT = 1
KEEP_VERSIONS = 2  # at least: the current one, and the one a reader may still be scanning
# version_name: six digits (more past 999999); a run's attempt adds a token (attempt_name)
VERSION_PATTERN = re.compile(r"v(\d{6,})(?:-[0-9a-f]{8})?")


class NotAnOutput(FileNotFoundError):
    """The directory holds no digestflow output."""


class DamagedOutput(UserError):
    """The output's manifest, or the version it names, cannot be read as it should."""


def recovery_hint(output: str) -> str:
    """What a user can do about a damaged output (the same advice everywhere)."""
    return (
        "restore it from a backup, or rebuild the output with "
        f"'digestflow run --input ... --output {output} --overwrite'"
    )


@dataclass(frozen=True)
class Manifest:
    version: int
    root: str  # the version's directory, relative to the output directory
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        document = {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "root": self.root,
            **self.extra,
        }
        return json.dumps(document, indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """The manifest in ``text``; ``ValueError`` saying what is wrong with it otherwise."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("is not JSON") from None
        if not isinstance(document, dict):
            raise ValueError(f"holds a JSON {type(document).__name__}, not an object")
        missing = [key for key in ("format", "version", "root") if key not in document]
        if missing:
            raise ValueError("has no " + " and no ".join(f'"{key}"' for key in missing))
        fmt = document["format"]
        if not _is_count(fmt) or fmt != MANIFEST_FORMAT:
            if _is_count(fmt) and fmt > MANIFEST_FORMAT:
                raise ValueError(
                    f"has format {fmt}, written by a newer digestflow (this one reads format "
                    f"{MANIFEST_FORMAT}): upgrade digestflow to read it"
                )
            raise ValueError(f'has "format" {fmt!r}, not {MANIFEST_FORMAT}')
        version, root = document["version"], document["root"]
        if not _is_count(version):
            raise ValueError(f'has "version" {version!r}, not a positive integer')
        if not isinstance(root, str) or not VERSION_PATTERN.fullmatch(root):
            raise ValueError(f'has "root" {root!r}, not a version directory like v000001')
        known = {"format", "version", "root"}
        return cls(
            version=version,
            root=root,
            extra={k: v for k, v in document.items() if k not in known},
        )


def _is_count(value: object) -> bool:
    # bool is an int subclass, and JSON's true is no number
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def version_name(version: int) -> str:
    return f"v{version:06d}"


def attempt_name(version: int) -> str:
    """The directory one run writes version ``version`` into: unique per attempt, so two
    runs aiming at the same version never write into one directory (only one publishes)."""
    return f"{version_name(version)}-{secrets.token_hex(4)}"


def version_number(name: str) -> int | None:
    """The version of a version directory name (None for any other name)."""
    match = VERSION_PATTERN.fullmatch(name)
    return int(match.group(1)) if match else None


def read_manifest(output: str) -> Manifest | None:
    """The manifest of ``output``: its newest commit record (:mod:`beam_jobs.store.commits`),
    or ``manifest.json`` for an output written before the commit log; None when it has
    neither. One that cannot be read or is not a manifest raises :class:`DamagedOutput`,
    naming the file."""
    committed = commits.committed_versions(output)
    if committed:
        path = commits.commit_path(output, committed[-1])
    else:
        path = FileSystems.join(output, MANIFEST_FILE)
    try:
        if not committed and not FileSystems.exists(path):
            return None
        with FileSystems.open(path) as fh:
            raw = fh.read()
    except OSError as error:
        raise DamagedOutput(f"cannot read {path}: {error}") from None
    try:
        manifest = Manifest.from_json(raw.decode("utf-8"))
        if committed:
            if manifest.version != committed[-1]:
                raise ValueError(f"holds version {manifest.version}, not {committed[-1]}")
            commits.files_of(manifest.extra)  # the file list has the right shape
        return manifest
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except ValueError as error:
        problem = str(error)
    advice = "" if "upgrade digestflow" in problem else f"; {recovery_hint(output)}"
    raise DamagedOutput(f"{path} is damaged: it {problem}{advice}")


def current_root(output: str) -> str:
    """The directory of the current version of ``output`` (checked to exist)."""
    return verified_root(output, current_manifest(output))


def current_manifest(output: str) -> Manifest:
    """The manifest of ``output``'s current version; :class:`NotAnOutput` if it has none."""
    manifest = read_manifest(output)
    if manifest is None:
        raise NotAnOutput(f"{output!r} is not a digestflow output (no {MANIFEST_FILE} inside)")
    return manifest


def verified_root(output: str, manifest: Manifest) -> str:
    """The directory of ``manifest``'s version, once it and every file its commit record
    lists are there as written (else :class:`DamagedOutput`, naming the file)."""
    root = FileSystems.join(output, manifest.root)
    source = manifest_source(output, manifest)
    if not dir_exists(root):
        raise DamagedOutput(
            f"{source} names version {manifest.root}, but {root} is missing; "
            f"{recovery_hint(output)}"
        )
    if "files" in manifest.extra:
        listed = commits.files_of(manifest.extra)
        problem = commits.check_files(output, listed)
        if problem:
            raise DamagedOutput(f"{problem} (listed by {source}); {recovery_hint(output)}")
        base = _listing_key(output)
        _LISTED[_listing_key(root)] = {
            table: [FileSystems.join(base, *f.path.split("/")) for f in files]
            for table, files in listed.items()
        }
    return root


# Version directory -> {table: files} as its commit record lists them, filled when a reader
# resolves the current version: readers then read exactly those files (tables.table_files).
_LISTED: dict[str, dict[str, list[str]]] = {}


def listed_files(root: str, table: str) -> list[str] | None:
    """The files of ``table`` that the commit record of ``root`` lists (None: not known)."""
    listing = _LISTED.get(_listing_key(root))
    return None if listing is None else list(listing.get(table, []))


def _listing_key(path: str) -> str:
    """One name per directory: a reader may resolve a version through a relative output
    path and read it through the absolute one (the catalog does); the files listed are
    then absolute too."""
    return path.rstrip("/") if is_remote(path) else os.path.abspath(path)


def manifest_source(output: str, manifest: Manifest) -> str:
    """The file ``manifest`` was read from (for messages)."""
    if "files" in manifest.extra:
        return commits.commit_path(output, manifest.version)
    return FileSystems.join(output, MANIFEST_FILE)


def is_remote(path: str) -> bool:
    return "://" in path


def dir_exists(path: str) -> bool:
    """Whether a directory holds anything (object stores have no directories, only
    objects under a prefix)."""
    if not is_remote(path):
        return os.path.exists(path)
    pattern = glob.escape(path.rstrip("/")) + "/**"
    return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)


def delete_dir(path: str) -> None:
    """Delete a directory and everything in it; a trailing ``/`` makes GCS delete the
    whole prefix instead of one object of that exact name."""
    if not is_remote(path):
        _delete_local(path)
    elif dir_exists(path):
        FileSystems.delete([path.rstrip("/") + "/"])


def _delete_local(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def publish(output: str, manifest: Manifest) -> None:
    """Make ``manifest`` the current one, in one step readers cannot see half of: its commit
    record is created only if that version has none (else
    :class:`~beam_jobs.store.commits.ConcurrentCommit`), then ``manifest.json`` follows.

    Locally the new manifest is written beside the old one and renamed over it (an atomic
    replace on POSIX). On GCS a single object upload becomes visible whole when it is
    closed, replacing the previous object, so it is written in place: a rename there is a
    copy plus a delete, with a moment of no manifest at all.
    """
    commits.create(output, manifest.version, json.loads(manifest.to_json()))
    payload = manifest.to_json().encode("utf-8")
    if is_remote(output):
        with FileSystems.create(FileSystems.join(output, MANIFEST_FILE)) as fh:
            fh.write(payload)
        return
    scratch = os.path.join(output, f".{MANIFEST_FILE}.{manifest.version}.tmp")
    with open(scratch, "wb") as fh:
        fh.write(payload)
    os.replace(scratch, os.path.join(output, MANIFEST_FILE))


def retire_versions(output: str, current: int, keep: int) -> list[str]:
    """Delete every version directory up to ``current`` but the ``keep`` newest published
    ones: older versions (a reader that resolved the previous manifest may still be scanning
    the one before), and attempts that never published (failed, or beaten by another run).
    Attempts at ``current`` itself stay: they are the runs that planned from the same version
    as this one and may still be writing; each deletes its own directory when its commit is
    refused, and one that crashed goes with the next version's retirement."""
    kept_versions = range(max(1, current - keep + 1), current + 1)
    kept = {kept_root(output, v) for v in kept_versions} | _referenced_dirs(output, kept_versions)
    stale = []
    for name in sorted(_version_dirs(output)):
        number = version_number(name)
        if number is not None and number < current and name not in kept:
            stale.append(FileSystems.join(output, name))
    for path in stale:
        delete_dir(path)
    return stale


def oldest_kept(output: str, current: int) -> int | None:
    """The oldest version ``current``'s retirement keeps, by the ``keep_versions`` its commit
    record holds (None: not recorded, an output written before it was)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        keep = commits.read_commit(output, current).get("keep_versions")
        if isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1:
            return max(1, current - keep + 1)
    return None


def _referenced_dirs(output: str, kept: range) -> set[str]:
    """The version directories holding files that the kept versions list (an update lists
    the files of earlier versions it did not change: they stay until compaction)."""
    found: set[str] = set()
    for version in kept:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            listed = commits.listing(output, version) or {}
            found.update(e.path.split("/", 1)[0] for entries in listed.values() for e in entries)
    return found


def kept_root(output: str, version: int) -> str:
    """The directory name of published ``version`` (from its commit record; older outputs
    used the plain version name)."""
    if version in commits.committed_versions(output):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return str(commits.read_commit(output, version)["root"])
    return version_name(version)


def _version_dirs(output: str) -> set[str]:
    """Names of the version directories in ``output``."""
    if not is_remote(output):
        if not os.path.isdir(output):
            return set()
        return {n for n in os.listdir(output) if VERSION_PATTERN.fullmatch(n)}
    pattern = FileSystems.join(glob.escape(output.rstrip("/")), "v*", "**")
    prefix = output.rstrip("/") + "/"
    names = set()
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        name = metadata.path[len(prefix) :].split("/", 1)[0]
        if VERSION_PATTERN.fullmatch(name):
            names.add(name)
    return names


def prepare_output(output: str, overwrite: bool) -> tuple[int, str]:
    """Refuse to mix a new run with an old one. Returns the version this run writes and its
    directory: the next version number, so with ``overwrite`` the old run stays readable
    (and intact if this run fails) until the new manifest replaces it. A damaged manifest
    is refused unless ``overwrite`` (which replaces it, numbering after every version
    directory there)."""
    try:
        manifest = read_manifest(output)
        damaged = False
    except DamagedOutput:
        if not overwrite:
            raise
        manifest, damaged = None, True
    legacy = _flat_tables(output)
    if (manifest is not None or legacy) and not overwrite:
        raise UserError(f"output {output!r} already holds a digestflow run; pass --overwrite")
    if not is_remote(output):
        _check_writable(output)  # before anything is deleted: a refused run changes nothing
    for path in legacy:
        _delete_local(path)
    if manifest is not None:
        version = manifest.version + 1
    elif damaged:
        version = max([*_local_versions(output), *commits.committed_versions(output)], default=0)
        version += 1
    else:
        version = 1
    # a directory of its own: a concurrent run aiming at the same version cannot mix into it
    return version, FileSystems.join(output, attempt_name(version))


def _local_versions(output: str) -> list[int]:
    """The numbers of the version directories in a local output (a remote output with a
    damaged manifest starts again at version 1)."""
    if is_remote(output) or not os.path.isdir(output):
        return []
    return [n for n in map(version_number, os.listdir(output)) if n is not None]


def _check_writable(output: str) -> None:
    """Create ``output`` if needed and prove a file can be created in it; the probe file
    (a unique name, so no earlier file is touched) is always removed again."""
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output directory {output!r}: {error}") from None
    if not os.path.isdir(output):
        raise UserError(f"output {output!r} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".digestflow-write-probe-", dir=output)
    except OSError as error:
        raise UserError(f"output directory {output!r} is not writable: {error}") from None
    os.close(handle)
    os.remove(probe)


def _flat_tables(output: str) -> list[str]:
    """Tables of a local output written before versioning (DIR/records/ ...)."""
    if is_remote(output) or not os.path.isdir(output):
        return []
    names = {*TABLES, *(f"_tmp_{t}" for t in TABLES), SUMMARY_FILE}
    return sorted(os.path.join(output, name) for name in os.listdir(output) if name in names)
