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
reading the manifest once per use.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from transforms.schema import TABLES

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "run_summary.json"
MANIFEST_FORMAT = 1
VERSION_PATTERN = re.compile(r"v\d{6}")


class NotAnOutput(FileNotFoundError):
    """The directory holds no digestflow output."""


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
        document = json.loads(text)
        if document.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unsupported manifest format {document.get('format')!r}")
        known = {"format", "version", "root"}
        return cls(
            version=int(document["version"]),
            root=str(document["root"]),
            extra={k: v for k, v in document.items() if k not in known},
        )


def version_name(version: int) -> str:
    return f"v{version:06d}"


def read_manifest(output: str) -> Manifest | None:
    path = FileSystems.join(output, MANIFEST_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as fh:
        return Manifest.from_json(fh.read().decode("utf-8"))


def current_root(output: str) -> str:
    """The directory of the current version of ``output``."""
    manifest = read_manifest(output)
    if manifest is None:
        raise NotAnOutput(f"{output!r} is not a digestflow output (no {MANIFEST_FILE} inside)")
    return FileSystems.join(output, manifest.root)


def is_remote(path: str) -> bool:
    return "://" in path


def dir_exists(path: str) -> bool:
    """Whether a directory holds anything (object stores have no directories, only
    objects under a prefix)."""
    if not is_remote(path):
        return FileSystems.exists(path)
    pattern = path.rstrip("/") + "/**"
    return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)


def delete_dir(path: str) -> None:
    """Delete a directory and everything in it; a trailing ``/`` makes GCS delete the
    whole prefix instead of one object of that exact name."""
    if dir_exists(path):
        FileSystems.delete([path.rstrip("/") + "/" if is_remote(path) else path])


def publish(output: str, manifest: Manifest) -> None:
    """Make ``manifest`` the current one, in one step readers cannot see half of.

    Locally the new manifest is written beside the old one and renamed over it (an atomic
    replace on POSIX). On GCS a single object upload becomes visible whole when it is
    closed, replacing the previous object, so it is written in place: a rename there is a
    copy plus a delete, with a moment of no manifest at all.
    """
    final = FileSystems.join(output, MANIFEST_FILE)
    payload = manifest.to_json().encode("utf-8")
    if is_remote(output):
        with FileSystems.create(final) as fh:
            fh.write(payload)
        return
    scratch = FileSystems.join(output, f".{MANIFEST_FILE}.{manifest.version}.tmp")
    with FileSystems.create(scratch) as fh:
        fh.write(payload)
    FileSystems.rename([scratch], [final])


def retire_versions(output: str, current: int, keep: int) -> list[str]:
    """Delete the version directories older than the ``keep`` newest (never the current):
    a reader that resolved the previous manifest may still be scanning that version."""
    stale = [
        FileSystems.join(output, version_name(v))
        for v in range(1, current - keep + 1)
        if dir_exists(FileSystems.join(output, version_name(v)))
    ]
    for path in stale:
        delete_dir(path)
    return stale


def prepare_output(output: str, overwrite: bool) -> tuple[int, str]:
    """Refuse to mix a new run with an old one. Returns the version this run writes and its
    directory: the next version number, so with ``overwrite`` the old run stays readable
    (and intact if this run fails) until the new manifest replaces it."""
    manifest = read_manifest(output)
    legacy = _flat_tables(output)
    if (manifest is not None or legacy) and not overwrite:
        raise UserError(f"output {output!r} already holds a digestflow run; pass --overwrite")
    if legacy:
        FileSystems.delete(legacy)
    version = manifest.version + 1 if manifest is not None else 1
    root = FileSystems.join(output, version_name(version))
    delete_dir(root)  # left by a failed attempt: no manifest points there
    if not is_remote(output):
        _check_writable(output)
    return version, root


def _check_writable(output: str) -> None:
    try:
        FileSystems.mkdirs(output)
    except OSError as error:
        if not FileSystems.exists(output):
            raise UserError(f"cannot create output directory {output!r}: {error}") from None
    probe = FileSystems.join(output, ".digestflow-write-probe")
    try:
        FileSystems.create(probe).close()
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001 - any failure here means "not writable"
        raise UserError(f"output directory {output!r} is not writable: {error}") from None


def _flat_tables(output: str) -> list[str]:
    """Tables of a local output written before versioning (DIR/records/ ...)."""
    if is_remote(output) or not os.path.isdir(output):
        return []
    names = {*TABLES, *(f"_tmp_{t}" for t in TABLES), SUMMARY_FILE}
    return sorted(os.path.join(output, name) for name in os.listdir(output) if name in names)
