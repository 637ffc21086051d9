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
KEEP_VERSIONS = 2  # the current one, and the one a reader may still be scanning


def run_settings(dedup: DedupConfig, embed: EmbedConfig | None) -> dict[str, Any]:
    """What an update must share with the run it extends for the result to equal one full
    run: the clustering settings, and the model that produced the stored embeddings."""
    settings: dict[str, Any] = {"dedup": _plain(asdict(dedup))}
    if embed is not None:
        settings["embedding"] = {
            "model": str(embed.model_dir),
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


def ingested_hashes(root: str) -> set[str]:
    """SHA-256 of every dump a version ingested (its ``inputs`` table)."""
    hashes: set[str] = set()
    pattern = FileSystems.join(root, "inputs", "*.parquet")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as fh:
            column = pq.read_table(fh, columns=["sha256"]).column("sha256")
        hashes.update(h for h in column.to_pylist() if h)
    return hashes


@dataclass(frozen=True)
class UpdatePlan:
    previous: layout.Manifest
    previous_root: str
    version: int
    root: str
    new_files: list[str]
    skipped_files: list[str]  # already ingested (same bytes), or a repeat within this batch


def plan_update(output: str, patterns: list[str], settings: dict[str, Any]) -> UpdatePlan:
    """Check that ``output`` can take an update with ``settings`` and pick the new dumps."""
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
    known = ingested_hashes(previous_root)
    new_files, skipped = [], []
    for path in _matched_paths(patterns):
        digest = file_sha256(path)
        if digest in known:
            skipped.append(path)
        else:
            known.add(digest)
            new_files.append(path)
    version = manifest.version + 1
    return UpdatePlan(
        previous=manifest,
        previous_root=previous_root,
        version=version,
        root=FileSystems.join(output, layout.version_name(version)),
        new_files=new_files,
        skipped_files=skipped,
    )


def _matched_paths(patterns: list[str]) -> list[str]:
    paths = {m.path for result in FileSystems.match(patterns) for m in result.metadata_list}
    return sorted(paths)


def clear_version_dir(root: str) -> None:
    """Remove what a failed or killed earlier attempt left in the directory of the version
    about to be written (no manifest points there)."""
    if FileSystems.exists(root):
        FileSystems.delete([root])


def retire_old_versions(output: str, current: int, keep: int = KEEP_VERSIONS) -> list[str]:
    """Delete version directories older than the ``keep`` newest (never the current)."""
    stale = [FileSystems.join(output, layout.version_name(v)) for v in range(1, current - keep + 1)]
    stale = [path for path in stale if FileSystems.exists(path)]
    if stale:
        FileSystems.delete(stale)
    return stale
