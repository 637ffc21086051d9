"""The output contract: one pyarrow schema per table, with a description on every column.

Writer, reader (DuckDB views), README table and tests all take the schema from here.
Later stages add columns; existing names are never renamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

ROWS_PER_ROW_GROUP = 128 * 1024
EMBEDDING_DIM = 384  # all-MiniLM-L6-v2, the default model; other models: records_schema(dim)


def _field(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


RECORD_FIELDS: list[pa.Field] = [
    _field("record_id", pa.string(), "Stable id: hash of (source_file, record_index).", False),
    _field("source_file", pa.string(), "Path of the dump the record was read from.", False),
    _field("record_index", pa.int64(), "0-based record slot in its file.", False),
    _field("digest_date", pa.date32(), "Date of the digest page (see 'Dates'); null if unknown."),
    _field("title", pa.string(), "Cleaned title (HTML entities, NFKC, whitespace).", False),
    _field("abstract", pa.string(), "Cleaned abstract.", False),
    _field(
        "content_hash", pa.string(), "Hash of the case-folded word tokens of title+abstract.", False
    ),
    _field("code_urls", pa.list_(pa.string()), "Links found in the abstract, in order.", False),
    _field("cluster_id", pa.string(), "record_id of the cluster's canonical record.", False),
    _field("is_canonical", pa.bool_(), "Exactly one row per cluster is canonical.", False),
    _field(
        "duplicate_of",
        pa.string(),
        "record_id of the record it copies: the canonical, or its former canonical if a "
        "semantic merge moved its cluster; null on canonical rows.",
    ),
    _field(
        "similarity",
        pa.float32(),
        "Similarity to duplicate_of (1.0 exact, Jaccard near, cosine semantic); null on "
        "canonical rows.",
    ),
    _field(
        "dup_kind",
        pa.string(),
        "'exact' | 'near' | 'semantic' (a revision, see 'Revisions'); null on canonical rows.",
    ),
]


def enrichment_fields(embedding_dim: int = EMBEDDING_DIM) -> list[pa.Field]:
    """Columns added by the embedding/tagging stage (null when it is switched off)."""
    tag_score = pa.struct([("tag", pa.string()), ("score", pa.float32())])
    return [
        _field(
            "embedding",
            pa.list_(pa.float32(), embedding_dim),
            "L2-normalized embedding of the canonical's text (duplicates reuse it); "
            "views cast it to FLOAT[dim].",
        ),
        _field("tags", pa.list_(pa.string()), "Topic tags, then survey/benchmark/has-code."),
        _field("tag_scores", pa.list_(tag_score), "Calibrated score of every topic tag."),
    ]


def records_schema(embedding_dim: int = EMBEDDING_DIM) -> pa.Schema:
    return pa.schema(RECORD_FIELDS + enrichment_fields(embedding_dim))


DEAD_LETTER_FIELDS: list[pa.Field] = [
    _field("source_file", pa.string(), "File the input came from.", False),
    _field("record_index", pa.int64(), "Record slot it occupied; null for file-level failures."),
    _field("reason", pa.string(), "Why it is not a record (see 'Dead letters').", False),
    _field("excerpt", pa.string(), "At most 200 characters of the raw input or the error.", False),
]

CLUSTER_FIELDS: list[pa.Field] = [
    _field("cluster_id", pa.string(), "Same as records.cluster_id.", False),
    _field("canonical_record_id", pa.string(), "record_id of the canonical record.", False),
    _field("size", pa.int64(), "Number of records in the cluster.", False),
    _field("distinct_texts", pa.int64(), "Number of distinct content_hash values in it.", False),
    _field("first_digest_date", pa.date32(), "Earliest digest_date of its records."),
    _field("last_digest_date", pa.date32(), "Latest digest_date of its records."),
]

INPUT_FIELDS: list[pa.Field] = [
    _field("source_file", pa.string(), "Path of an ingested dump.", False),
    _field(
        "sha256",
        pa.string(),
        "SHA-256 of its stored bytes: an update skips a dump whose hash is already here; "
        "null when it could not be read.",
    ),
    _field("size_bytes", pa.int64(), "Bytes read from it.", False),
    _field("records", pa.int64(), "Records parsed from it.", False),
    _field("dead_letters", pa.int64(), "Dead letters it produced.", False),
]


def embeddings_schema(embedding_dim: int = EMBEDDING_DIM) -> pa.Schema:
    return pa.schema(
        [
            _field(
                "text_key",
                pa.string(),
                "Hash of the exact text the model embedded (transforms.incremental.read_back.embedding_key).",
                False,
            ),
            _field(
                "embedding",
                pa.list_(pa.float32(), embedding_dim),
                "Its L2-normalized embedding; an incremental run reuses it instead of "
                "embedding the text again.",
                False,
            ),
        ]
    )


# The update index: what ``--incremental`` reads instead of re-signing and re-naming the
# corpus (see beam_jobs/update.py). Written by every run; an update carries the rows of the
# texts and canonicals it did not touch.
LSH_BAND_FIELDS: list[pa.Field] = [
    _field("content_hash", pa.string(), "A distinct text (records.content_hash).", False),
    _field(
        "band_hashes",
        pa.list_(pa.uint64()),
        "64-bit hash of each LSH band of its MinHash signature (transforms.dedup.minhash."
        "band_hashes): two texts share an LSH bucket when one of these is equal at the same "
        "position.",
        False,
    ),
]

PAPER_NAME_FIELDS: list[pa.Field] = [
    _field("record_id", pa.string(), "A record (written with semantic merging on).", False),
    _field(
        "names",
        pa.list_(pa.string()),
        "The merge's blocking keys of its text (transforms.enrich.semantic.evidence.blocking_keys): "
        "coined names and hashes of its title runs, first sentence and code links; for a "
        "candidate also the band keys of its own vector ('v:' + band + code, "
        "transforms.enrich.semantic.vectors).",
        False,
    ),
    _field(
        "candidate",
        pa.bool_(),
        "It took part in the merge: a lexical cluster's canonical with an embedding.",
        False,
    ),
]

RECORDS_SCHEMA = records_schema()
LSH_BANDS_SCHEMA = pa.schema(LSH_BAND_FIELDS)
PAPER_NAMES_SCHEMA = pa.schema(PAPER_NAME_FIELDS)
DEAD_LETTER_SCHEMA = pa.schema(DEAD_LETTER_FIELDS)
CLUSTERS_SCHEMA = pa.schema(CLUSTER_FIELDS)
INPUTS_SCHEMA = pa.schema(INPUT_FIELDS)

TABLES: dict[str, pa.Schema] = {
    "records": RECORDS_SCHEMA,
    "clusters": CLUSTERS_SCHEMA,
    "dead_letter": DEAD_LETTER_SCHEMA,
    "inputs": INPUTS_SCHEMA,
    "embeddings": embeddings_schema(),
    "lsh_bands": LSH_BANDS_SCHEMA,
    "paper_names": PAPER_NAMES_SCHEMA,
}


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts keyed by column name) -> a table that conforms to ``schema`` exactly."""
    return pa.Table.from_pylist(list(rows), schema=schema)


def markdown_table(schema: pa.Schema) -> str:
    """The column table README.md shows for ``schema`` (a test keeps them in sync)."""
    lines = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for field in schema:
        doc = (field.metadata or {}).get(b"doc", b"").decode()
        lines.append(
            f"| `{field.name}` | {field.type} | {'yes' if field.nullable else 'no'} | {doc} |"
        )
    return "\n".join(lines)
