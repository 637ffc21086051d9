"""Adding new dumps to an existing output (``digestflow run --incremental``).

An update writes version N+1 beside version N and then switches the manifest (see
:mod:`beam_jobs.layout`), so a failed or killed update leaves version N in place and readers
never see a mix. Version N+1 is what one full run over every dump ingested so far would
write, at the cost of the new records and the part of the corpus they reach:

1. :func:`plan_update` picks the dumps not ingested yet (by content hash);
2. :func:`affected_by` parses and signs them here and looks them up in version N's update
   index (``lsh_bands``, ``paper_names``) to find the old clusters they can change
   (:func:`transforms.affected.affected_part`, exact);
3. the pipeline clusters the new records with those clusters' records (read back from
   Parquet, never re-parsed); texts embedded before are never embedded again
   (:class:`transforms.previous.EmbedUnseenTexts`);
4. meanwhile every other row of version N is copied (:mod:`beam_jobs.carry`).

A version written before the index existed is clustered again whole (once).

A dump is identified by the SHA-256 of its stored bytes: a dump already ingested (under
any name) is skipped, so re-adding a day changes nothing.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs import layout
from beam_jobs.options import UserError
from transforms.affected import (
    ROLE_COLUMNS,
    Affected,
    JoinedCopy,
    NewTexts,
    PreviousIndex,
    affected_part,
    joined_copies,
)
from transforms.dedup import DedupConfig
from transforms.embed import EmbedConfig
from transforms.lines import decompressed, parse_stream
from transforms.minhash import MinHasher, band_hashes
from transforms.parse import file_context
from transforms.read import modified_year
from transforms.records import Record
from transforms.semantic import SemanticConfig, paper_names
from transforms.tags import Taxonomy
from transforms.text import normalized_text

HASH_CHUNK = 1 << 20


# DedupConfig fields that change speed, never the result (components always finish exactly).
PERFORMANCE_ONLY = ("lsh_shards", "component_rounds")


def run_settings(
    dedup: DedupConfig,
    embed: EmbedConfig | None,
    digest_year: int | None = None,
    semantic: SemanticConfig | None = None,
    topics: Taxonomy | None = None,
) -> dict[str, Any]:
    """What an update must share with the run it extends for the result to equal one full
    run: the clustering settings, the year rule for dates, what produced the stored
    embeddings (the model named as the user gave it: the packaged default is stored as
    ``None``, so a rebuilt environment is not a different model), the semantic merge, and
    the tagging (a fingerprint of the taxonomy and its labelled examples)."""
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
    settings["semantic"] = (
        None
        if semantic is None
        else {"threshold": semantic.threshold, "max_bucket": semantic.max_bucket}
    )
    settings["tags"] = None if topics is None else {"taxonomy": taxonomy_fingerprint(topics)}
    return settings


def taxonomy_fingerprint(topics: Taxonomy) -> str:
    """Identity of a taxonomy with its examples (a frozen dataclass: its repr is its value)."""
    return hashlib.sha256(repr(topics).encode("utf-8")).hexdigest()[:16]


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
    # ingested before but unreadable then (no records): read again, and their earlier
    # ``inputs`` and ``dead_letter`` rows are dropped, as a full run would not have them
    retried: list[str] = field(default_factory=list)


def plan_update(output: str, patterns: list[str], settings: dict[str, Any]) -> UpdatePlan:
    """Check that ``output`` can take an update with ``settings`` and pick the new dumps.

    A dump is skipped when its bytes were ingested before (under any name; empty files
    only under the same name). A path that was ingested with other bytes is refused: its
    record ids (path + slot) would collide with the earlier records'. A dump that cannot be
    read here is passed on, and the pipeline dead-letters it like in a full run; one that
    could not be read when it was ingested is read again once it can be.
    """
    manifest = layout.read_manifest(output)
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
    previous_root = FileSystems.join(output, manifest.root)
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
    return UpdatePlan(
        previous=manifest,
        previous_root=previous_root,
        version=version,
        root=FileSystems.join(output, layout.version_name(version)),
        new_files=new_files,
        skipped=skipped,
        retried=retried,
    )


def _readable_sha256(path: str) -> str | None:
    try:
        return file_sha256(path)
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


# ------------------------------------------------------------------ the affected part


def affected_by(
    previous_root: str,
    new_files: list[str],
    dedup: DedupConfig,
    semantic: SemanticConfig | None,
    digest_year: int | None = None,
) -> tuple[Affected, list[JoinedCopy]]:
    """The part of the version at ``previous_root`` that ``new_files`` can change, and the
    new records that join a known cluster directly (see :mod:`transforms.affected`); all of
    the version (and no direct joins) when it has no update index."""
    index = read_index(previous_root, dedup, semantic is not None)
    if index is None:
        return Affected.all(), []
    try:
        records = list(_new_records(new_files, digest_year))
    except UnreadableHere:
        # The plan must see every record the job will see; if it cannot read a dump that
        # the job may read, the only safe part is everything.
        return Affected.all(), []
    joined = joined_copies(records, index.records, dedup.canonical_policy)
    bands: dict[str, np.ndarray] = {}
    if dedup.near_duplicates:  # texts the index holds have their band hashes there
        known = set(pc.unique(index.text_hashes).to_pylist())
        unseen = {r.content_hash: r for r in records if r.content_hash not in known}
        bands = _band_hashes(list(unseen.values()), dedup)
    max_bucket = semantic.max_bucket if semantic is not None else None
    while True:
        joined_ids = {j.record.record_id for j in joined}
        seeds = [r for r in records if r.record_id not in joined_ids]
        # what the records the job clusters name (a copy two records share can differ in
        # case or hyphens, so each record's own names)
        names = [paper_names(r.title, r.abstract) for r in seeds] if semantic else []
        part = affected_part(
            index, NewTexts([r.content_hash for r in seeds], bands, names), max_bucket
        )
        # A copy whose cluster is in the part goes through the job with it, where it may
        # become a canonical: plan again with it (and its names) among the seeds.
        staying = [j for j in joined if j.cluster_id not in part.cluster_ids]
        if len(staying) == len(joined):
            break
        joined = staying
    joined_ids = {j.record.record_id for j in joined}
    return replace(part, joined=frozenset(joined_ids), new_records=len(records)), joined


def read_index(root: str, dedup: DedupConfig, semantic: bool) -> PreviousIndex | None:
    """Version ``root``'s update index, or None when it has none (written by an older
    digestflow, or without the table a setting needs)."""
    if not layout.dir_exists(FileSystems.join(root, "lsh_bands")):
        return None
    if semantic and not layout.dir_exists(FileSystems.join(root, "paper_names")):
        return None
    longest = dedup.canonical_policy == "longest"
    records = _read(root, "records", [*ROLE_COLUMNS, "abstract"] if longest else ROLE_COLUMNS)
    if longest:
        length = pc.utf8_length(records.column("abstract"))
        records = records.drop_columns(["abstract"]).append_column("abstract_length", length)
    bands_table = _read(root, "lsh_bands", None)
    band_count = dedup.minhash.lsh_params[0]
    flat = pc.list_flatten(bands_table.column("band_hashes")).to_numpy(zero_copy_only=False)
    bands = flat.astype(np.uint64).reshape(-1, band_count)
    if len(bands) != bands_table.num_rows:
        return None  # written with other LSH parameters: the settings check said otherwise
    names = _read(root, "paper_names", None) if semantic else None
    if names is not None and names.num_rows != records.num_rows:
        return None  # every record has a names row when merging is on: this index is not whole
    return PreviousIndex(
        records=records,
        text_hashes=bands_table.column("content_hash").combine_chunks(),
        bands=bands,
        names=names,
    )


def _read(root: str, table: str, columns: list[str] | None) -> pa.Table:
    pattern = FileSystems.join(root, table, "*.parquet")
    parts = []
    for metadata in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as fh:
            parts.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(parts) if parts else pa.table({})


class UnreadableHere(Exception):
    """The planner could not open a dump the job will try to read."""


def _new_records(paths: list[str], digest_year: int | None) -> Iterator[Record]:
    """The records of the new dumps, exactly as the pipeline parses them (same dates: the
    year rule reads the file's modification time too). Raises :class:`UnreadableHere` if a
    dump cannot be opened here (the job may read it, or dead-letter it)."""
    for path in paths:
        try:
            metadata = metadata_of(path)
            raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as error:  # noqa: BLE001 - any failure to open
            raise UnreadableHere(path) from error
        ctx = file_context(path, modified_year(metadata.last_updated_in_seconds), digest_year)
        with raw:
            try:
                stream = decompressed(raw, path)
            except Exception as error:  # noqa: BLE001 - the job dead-letters it, or not
                raise UnreadableHere(path) from error
            with stream:
                yield from (item for item in parse_stream(stream, ctx) if isinstance(item, Record))


def _band_hashes(records: list[Record], dedup: DedupConfig) -> dict[str, np.ndarray]:
    if not records:
        return {}
    hasher = MinHasher(dedup.minhash)
    tokens = [normalized_text(r.title, r.abstract).split() for r in records]
    hashes = band_hashes(hasher.signatures(tokens), *dedup.minhash.lsh_params)
    return {r.content_hash: row for r, row in zip(records, hashes, strict=True)}
