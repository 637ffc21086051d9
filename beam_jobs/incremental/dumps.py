"""Which of an update's input dumps are new: a dump is identified by the SHA-256 of its
stored bytes, so a dump already ingested (under any name) is skipped and re-adding a day
changes nothing; a path ingested before with other bytes is refused.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_jobs.errors import UserError
from beam_jobs.incremental.settings import settings_differences
from beam_jobs.store import versions
from beam_jobs.store.tables import read_table
from transforms.ingest.read import dump_sha256


@dataclass(frozen=True)
class Ingested:
    """The dumps a version holds: SHA-256 by path, and every non-empty dump's SHA-256."""

    by_path: dict[str, str | None]
    hashes: set[str]


def ingested(root: str) -> Ingested:
    """What a version ingested (its ``inputs`` table)."""
    by_path: dict[str, str | None] = {}
    hashes: set[str] = set()
    for row in read_table(root, "inputs", ["source_file", "sha256", "size_bytes"]).to_pylist():
        by_path[row["source_file"]] = row["sha256"]
        if row["sha256"] and row["size_bytes"]:
            hashes.add(row["sha256"])
    return Ingested(by_path, hashes)


@dataclass(frozen=True)
class NewDumps:
    previous: versions.Manifest
    previous_root: str
    version: int
    root: str
    new_files: list[str]
    skipped: list[str]  # already ingested (same bytes), or a repeat within this batch
    # ingested before but unreadable then (no records): read again, and their earlier
    # ``inputs`` and ``dead_letter`` rows are dropped, as a full run would not have them
    retried: list[str] = field(default_factory=list)


def new_dumps(output: str, patterns: list[str], settings: dict[str, Any]) -> NewDumps:
    """Check that ``output`` can take an update with ``settings`` and pick the new dumps.

    A dump is skipped when its bytes were ingested before (under any name; empty files
    only under the same name). A path that was ingested with other bytes is refused: its
    record ids (path + slot) would collide with the earlier records'. A dump that cannot be
    read here is passed on, and the pipeline dead-letters it like in a full run; one that
    could not be read when it was ingested is read again once it can be.
    """
    manifest = versions.read_manifest(output)
    if manifest is None:
        raise UserError(
            f"--incremental needs an existing digestflow output, and {output!r} has none "
            "(run once without --incremental first)"
        )
    stored = manifest.extra.get("settings")
    if stored is None:
        raise UserError(
            f"{output!r} does not record the settings it was built with (a job launched "
            "detached, or an older digestflow), so an update cannot match them; rebuild it "
            "with --overwrite"
        )
    differences = settings_differences(stored, settings)
    if differences:
        raise UserError(
            "an update must use the settings of the output it extends (else the result "
            "would differ from one full run); differing: " + "; ".join(differences)
        )
    previous_root = versions.verified_root(output, manifest)  # refuses a damaged version
    known = ingested(previous_root)
    new_files, skipped, changed, retried = [], [], [], []
    for path in _matched_paths(patterns):
        digest = _readable_sha256(path)
        if path in known.by_path:
            stored = known.by_path[path]
            if stored is None and digest is not None:
                retried.append(path)  # unreadable when ingested, readable now: read it
                new_files.append(path)
            elif stored == digest or digest is None:
                skipped.append(path)  # the same bytes (or unreadable here: keep what we have)
            else:
                changed.append(path)
        elif digest is not None and digest in known.hashes:
            skipped.append(path)
        else:
            if digest is not None and _size(path):
                known.hashes.add(digest)
            new_files.append(path)
    if changed:
        raise UserError(
            "these dumps were ingested before with other contents (record ids are path + "
            "slot, so they would collide): " + ", ".join(changed) + "; give a changed dump a "
            "new name, or rebuild the output with --overwrite"
        )
    version = manifest.version + 1
    return NewDumps(
        previous=manifest,
        previous_root=previous_root,
        version=version,
        root=FileSystems.join(output, versions.attempt_name(version)),
        new_files=new_files,
        skipped=skipped,
        retried=retried,
    )


def _readable_sha256(path: str) -> str | None:
    try:
        return dump_sha256(path)
    except Exception:  # noqa: BLE001 - unreadable here: the pipeline dead-letters it
        return None


def _size(path: str) -> int:
    return metadata_of(path).size_in_bytes


def exact_pattern(path: str) -> str:
    """A match pattern for exactly ``path`` (a file named ``day[1].txt`` is not a glob)."""
    return glob.escape(path)


def metadata_of(path: str):
    """The file system's metadata of one file (matched by its exact name)."""
    return FileSystems.match([exact_pattern(path)])[0].metadata_list[0]


def _matched_paths(patterns: list[str]) -> list[str]:
    paths = {m.path for result in FileSystems.match(patterns) for m in result.metadata_list}
    return sorted(paths)
