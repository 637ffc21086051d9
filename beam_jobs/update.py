"""Adding new dumps to an existing output (``digestflow run --incremental``).

An update writes version N+1 beside version N and then switches the manifest (see
:mod:`beam_jobs.layout`), so a failed or killed update leaves version N in place and readers
never see a mix. Version N+1 is what one full run over every dump ingested so far would
write: the previous records are re-clustered with the new ones (records are read back
from Parquet, never re-parsed), and texts embedded before are never embedded again
(:class:`transforms.previous.EmbedUnseenTexts`).

A dump is identified by the SHA-256 of its stored bytes: a dump already ingested (under
any name) is skipped, so re-adding a day changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs import layout
from beam_jobs.options import UserError
from transforms.dedup import DedupConfig
from transforms.embed import EmbedConfig

HASH_CHUNK = 1 << 20


# DedupConfig fields that change speed, never the result (components always finish exactly).
PERFORMANCE_ONLY = ("lsh_shards", "component_rounds")


def run_settings(
    dedup: DedupConfig, embed: EmbedConfig | None, digest_year: int | None = None
) -> dict[str, Any]:
    """What an update must share with the run it extends for the result to equal one full
    run: the clustering settings, the year rule for dates, and what produced the stored
    embeddings (the model named as the user gave it: the packaged default is stored as
    ``None``, so a rebuilt environment is not a different model)."""
    clustering = {k: v for k, v in asdict(dedup).items() if k not in PERFORMANCE_ONLY}
    settings: dict[str, Any] = {"dedup": _plain(clustering), "digest_year": digest_year}
    if embed is not None:
        settings["embedding"] = {
            "model": embed.model,
            "backend": getattr(embed, "backend", "torch"),
            "max_seq_length": embed.max_seq_length,
            "text_template": embed.text_template,
        }
    else:
        settings["embedding"] = None
    return settings


def _plain(value: Any) -> Any:
    """JSON-comparable form (tuples become lists, as after a JSON round trip)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`run_settings` documents, one per
    changed leaf setting (``dedup.minhash.threshold: 0.8 -> 0.7``)."""
    old, new = _leaves(stored), _leaves(current)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _leaves(document: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(document, dict) or not document:
        return {prefix: document}
    leaves: dict[str, Any] = {}
    for key, value in document.items():
        leaves.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def file_sha256(path: str) -> str:
    """SHA-256 of a file's stored bytes (compressed files are not decompressed), the same
    digest the pipeline records in the ``inputs`` table."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Ingested:
    """The dumps a version holds: SHA-256 by path, and every non-empty dump's SHA-256."""

    by_path: dict[str, str | None]
    hashes: set[str]


def ingested(root: str) -> Ingested:
    """What a version ingested (its ``inputs`` table)."""
    by_path: dict[str, str | None] = {}
    hashes: set[str] = set()
    pattern = FileSystems.join(root, "inputs", "*.parquet")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as fh:
            table = pq.read_table(fh, columns=["source_file", "sha256", "size_bytes"])
        for row in table.to_pylist():
            by_path[row["source_file"]] = row["sha256"]
            if row["sha256"] and row["size_bytes"]:
                hashes.add(row["sha256"])
    return Ingested(by_path, hashes)


@dataclass(frozen=True)
class UpdatePlan:
    previous: layout.Manifest
    previous_root: str
    version: int
    root: str
    new_files: list[str]
    skipped: list[str]  # already ingested (same bytes), or a repeat within this batch


def plan_update(output: str, patterns: list[str], settings: dict[str, Any]) -> UpdatePlan:
    """Check that ``output`` can take an update with ``settings`` and pick the new dumps.

    A dump is skipped when its bytes were ingested before (under any name; empty files
    only under the same name). A path that was ingested with other bytes is refused: its
    record ids (path + slot) would collide with the earlier records'. A dump that cannot be
    read here is passed on, and the pipeline dead-letters it like in a full run.
    """
    manifest = layout.read_manifest(output)
    if manifest is None:
        raise UserError(
            f"--incremental needs an existing digestflow output, and {output!r} has none "
            "(run once without --incremental first)"
        )
    stored = manifest.extra.get("settings")
    if stored is not None:
        differences = settings_differences(stored, settings)
        if differences:
            raise UserError(
                "an update must use the settings of the output it extends (else the result "
                "would differ from one full run); differing: " + "; ".join(differences)
            )
    previous_root = FileSystems.join(output, manifest.root)
    known = ingested(previous_root)
    new_files, skipped, changed = [], [], []
    for path in _matched_paths(patterns):
        digest = _readable_sha256(path)
        if path in known.by_path:
            (skipped if known.by_path[path] == digest else changed).append(path)
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
    return UpdatePlan(
        previous=manifest,
        previous_root=previous_root,
        version=version,
        root=FileSystems.join(output, layout.version_name(version)),
        new_files=new_files,
        skipped=skipped,
    )


def _readable_sha256(path: str) -> str | None:
    try:
        return file_sha256(path)
    except Exception:  # noqa: BLE001 - unreadable here: the pipeline dead-letters it
        return None


def _size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def _matched_paths(patterns: list[str]) -> list[str]:
    paths = {m.path for result in FileSystems.match(patterns) for m in result.metadata_list}
    return sorted(paths)
