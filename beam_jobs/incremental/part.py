"""Adding new dumps to an existing output (``digestflow run --incremental``).

An update writes version N+1 beside version N and then switches the manifest (see
:mod:`beam_jobs.store.versions`), so a failed or killed update leaves version N in place and readers
never see a mix. Version N+1 is what one full run over every dump ingested so far would
write, at the cost of the new records and the part of the corpus they reach:

1. :func:`beam_jobs.incremental.dumps.new_dumps` picks the dumps not ingested yet (by
   content hash);
2. :func:`find_part` parses and signs them here and looks them up in version N's update
   index (``lsh_bands``, ``paper_names``) to find the old clusters they can change
   (:func:`transforms.incremental.part.affected_part`, exact);
3. the pipeline clusters the new records with those clusters' records (read back from
   Parquet, never re-parsed); texts embedded before are never embedded again
   (:class:`transforms.incremental.read_back.EmbedUnseenTexts`);
4. meanwhile every other row of version N is copied (:mod:`beam_jobs.incremental.background`).

A version written before the index existed is clustered again whole (once).

A dump is identified by the SHA-256 of its stored bytes: a dump already ingested (under
any name) is skipped, so re-adding a day changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.incremental.dumps import metadata_of
from beam_jobs.store.rows import RowGroupWriter
from beam_jobs.store.tables import read_table, select_rows, table_files
from transforms.dedup.duplicates import DedupConfig
from transforms.dedup.minhash import MinHasher, band_hashes
from transforms.enrich.embed import EmbedConfig, EmbeddingFailure, SentenceTransformerHandler
from transforms.enrich.known import embedding_key, embeddings_of_table
from transforms.enrich.semantic.evidence import paper_names
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.enrich.semantic.vectors import vector_keys
from transforms.incremental.joined import ROLE_COLUMNS, JoinedCopy, joined_copies
from transforms.incremental.part import (
    NewTexts,
    PreviousIndex,
    UpdatePart,
    affected_part,
    rows_where,
)
from transforms.ingest.lines import decompressed, parse_stream
from transforms.ingest.parse import file_context
from transforms.ingest.read import check_regular_file, modified_year
from transforms.records import Record
from transforms.schema import embeddings_schema
from transforms.text import normalized_text


def find_part(
    previous_root: str,
    new_files: list[str],
    dedup: DedupConfig,
    semantic: SemanticConfig | None,
    digest_year: int | None = None,
    vectors: PartVectors | None = None,
) -> tuple[UpdatePart, list[JoinedCopy]]:
    """The part of the version at ``previous_root`` that ``new_files`` can change, and the
    new records that join a known cluster directly (see :mod:`transforms.incremental.part`); all of
    the version (and no direct joins) when it has no update index.

    ``vectors``: with vector blocking (:mod:`transforms.enrich.semantic.vectors`), where the
    band keys of records without a stored vector come from (it embeds them)."""
    index = read_index(previous_root, dedup, semantic is not None)
    if index is None:
        return UpdatePart.all(), []
    try:
        records = list(_new_records(new_files, digest_year))
    except UnreadableHere:
        # The plan must see every record the job will see; if it cannot read a dump that
        # the job may read, the only safe part is everything.
        return UpdatePart.all(), []
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
        part_keys = None
        if vectors is not None and index.names is not None:
            # any record of the part may be a canonical when it is clustered again: the band
            # keys of every vector it could have count, as all of its names do
            names = [n | k for n, k in zip(names, vectors.of_new(seeds), strict=True)]
            part_keys = functools.partial(vectors.of_part, index.names)
        part = affected_part(
            index,
            NewTexts([r.content_hash for r in seeds], bands, names),
            max_bucket,
            part_keys,
        )
        # A copy whose cluster is in the part goes through the job with it, where it may
        # become a canonical: plan again with it (and its names) among the seeds.
        staying = [j for j in joined if j.cluster_id not in part.cluster_ids]
        if len(staying) == len(joined):
            break
        joined = staying
    joined_ids = {j.record.record_id for j in joined}
    previous = index.records
    part = replace(
        part,
        joined=frozenset(joined_ids),
        new_records=len(records),
        planned_embeddings=frozenset(vectors.fresh) if vectors is not None else frozenset(),
        previous_records=previous.num_rows,
        previous_clusters=pc.count_distinct(previous.column("cluster_id")).as_py(),
    )
    return part, joined


def read_index(root: str, dedup: DedupConfig, semantic: bool) -> PreviousIndex | None:
    """Version ``root``'s update index, or None when it has none (written by an older
    digestflow, or without the table a setting needs)."""
    if not table_files(root, "lsh_bands"):
        return None
    if semantic and not table_files(root, "paper_names"):
        return None
    longest = dedup.canonical_policy == "longest"
    records = read_table(root, "records", [*ROLE_COLUMNS, "abstract"] if longest else ROLE_COLUMNS)
    if longest:
        length = pc.utf8_length(records.column("abstract"))
        records = records.drop_columns(["abstract"]).append_column("abstract_length", length)
    bands_table = read_table(root, "lsh_bands", None)
    band_count = dedup.minhash.lsh_params[0]
    flat = pc.list_flatten(bands_table.column("band_hashes")).to_numpy(zero_copy_only=False)
    bands = flat.astype(np.uint64).reshape(-1, band_count)
    if len(bands) != bands_table.num_rows:
        return None  # written with other LSH parameters: the settings check said otherwise
    names = read_table(root, "paper_names", None) if semantic else None
    if names is not None and names.num_rows != records.num_rows:
        return None  # every record has a names row when merging is on: this index is not whole
    return PreviousIndex(
        records=records,
        text_hashes=bands_table.column("content_hash").combine_chunks(),
        bands=bands,
        names=names,
    )


class PartVectors:
    """The band keys of vectors the plan needs but the index does not hold.

    The index holds the keys of every old merge candidate (``paper_names``). A new record, or
    an old record that was no candidate, may be a canonical once its cluster is clustered
    again, so the plan needs the keys of its vector too. The vector is the stored one of its
    exact text if an earlier run embedded it; otherwise it is embedded here, once, and
    ``fresh`` keeps it: the update writes it to its ``embeddings`` table, where the job finds
    it as a known vector and does not embed the text again.
    """

    def __init__(self, root: str, embed: EmbedConfig, semantic: SemanticConfig) -> None:
        self._root = root
        self._embed = embed
        self._lsh = semantic.vectors
        self._handler = SentenceTransformerHandler(embed)
        self._model = None
        self._keys: dict[str, frozenset[str]] = {}  # by text key
        self._asked: set[str] = set()  # old record ids already looked at
        self._found: set[str] = set()
        self.fresh: dict[str, np.ndarray] = {}  # text key -> vector embedded here

    def of_new(self, records: list[Record]) -> list[frozenset[str]]:
        texts = [self._embed.text(r.title, r.abstract) for r in records]
        return self._keys_of(texts)

    def of_part(self, names: pa.Table, record_ids: set[str]) -> set[str]:
        """The band keys of the part's old records that were no merge candidate."""
        asked = record_ids - self._asked
        self._asked |= asked
        if asked:
            rows = rows_where(names, "record_id", asked)
            others = rows.filter(pc.invert(rows["candidate"]))["record_id"].to_pylist()
            if others:
                found = select_rows(
                    self._root, "records", ["title", "abstract"], "record_id", others
                )
                texts = [
                    self._embed.text(title, abstract)
                    for title, abstract in zip(
                        found["title"].to_pylist(), found["abstract"].to_pylist(), strict=True
                    )
                ]
                self._found |= set().union(*self._keys_of(texts))
        return self._found

    def _keys_of(self, texts: list[str]) -> list[frozenset[str]]:
        keys = [embedding_key(text) for text in texts]
        wanted = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._keys}
        if wanted:
            vectors = dict(self._stored(wanted))
            missing = [k for k in wanted if k not in vectors]
            vectors.update(self._embedded(missing, [wanted[k] for k in missing]))
            for key in wanted:
                vector = vectors.get(key)
                self._keys[key] = (
                    frozenset() if vector is None else vector_keys([vector], self._lsh)[0]
                )
        return [self._keys[k] for k in keys]

    def _stored(self, wanted: Mapping[str, str]) -> Iterator[tuple[str, np.ndarray]]:
        if not table_files(self._root, "embeddings"):
            return iter(())
        found = select_rows(self._root, "embeddings", ["text_key", "embedding"], "text_key", wanted)
        return embeddings_of_table(found)

    def _embedded(self, keys: list[str], texts: list[str]) -> dict[str, np.ndarray]:
        if not texts:
            return {}
        if self._model is None:
            self._model = self._handler.load_model()
        try:
            found = list(self._handler.run_inference(texts, self._model))
        except Exception:  # noqa: BLE001 - one text alone the model cannot take (a batch
            # retries text by text): the job dead-letters it too, so it has no vector
            found = [None] * len(texts)
        vectors = {}
        for key, vector in zip(keys, found, strict=True):
            if vector is not None and not isinstance(vector, EmbeddingFailure):
                vectors[key] = self.fresh[key] = np.asarray(vector, dtype=np.float32)
        return vectors

    def write(self, path: str) -> None:
        """The vectors embedded here as an ``embeddings`` file (written even when empty: the
        job's list of known vectors names it before planning ends)."""
        writer = RowGroupWriter(path, keep_empty=True)
        keys = sorted(self.fresh)
        if keys:
            dim = len(self.fresh[keys[0]])
            vectors = np.stack([self.fresh[k] for k in keys]).reshape(-1)
            embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors, pa.float32()), dim)
            writer.write(
                pa.table([pa.array(keys, pa.string()), embedding], schema=embeddings_schema(dim))
            )
        # an empty file is read as no rows whatever its vector size, and never moved into
        # the table (BackgroundUpdate.finish)
        writer.close(embeddings_schema())


class UnreadableHere(Exception):
    """The planner could not open a dump the job will try to read."""


def _new_records(paths: list[str], digest_year: int | None) -> Iterator[Record]:
    """The records of the new dumps, exactly as the pipeline parses them (same dates: the
    year rule reads the file's modification time too). Raises :class:`UnreadableHere` if a
    dump cannot be opened here (the job may read it, or dead-letter it)."""
    for path in paths:
        try:
            check_regular_file(path)  # open() on a FIFO blocks until a writer comes
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
