"""The digestflow job graph: dumps -> records -> clusters -> enriched papers -> Parquet tables.

Only wiring lives here (:func:`build_pipeline`); validating options, planning, running,
summarizing and publishing a run are :mod:`beam_jobs.launcher`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import apache_beam as beam

from beam_jobs.store.tables import table_dir, temp_dir
from transforms.dedup.duplicates import ClusterDuplicates, DedupConfig
from transforms.enrich.embed import EmbedConfig, model_embedding_dim
from transforms.enrich.papers import EmbedAndTagPapers
from transforms.enrich.semantic.merges import MergeClusterSummaries
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.enrich.tags.tagging import Taxonomy
from transforms.incremental.part import UpdatePartSource
from transforms.incremental.read_back import ReadPreviousVersion, SkipJoinedCopies, UpdateSources
from transforms.ingest.read import ParseDigests, ReadDigests
from transforms.metrics import counted, counter
from transforms.parquet import WriteParquetTable
from transforms.schema import (
    CLUSTERS_SCHEMA,
    DEAD_LETTER_SCHEMA,
    INPUTS_SCHEMA,
    LSH_BANDS_SCHEMA,
    PAPER_NAMES_SCHEMA,
    embeddings_schema,
    records_schema,
)

# Step label of each table's writer: stable names are what the Dataflow UI shows and what
# a streaming --update would match on. Small tables go to one file.
WRITERS = {
    "records": "WriteRecords",
    "clusters": "WriteClusters",
    "dead_letter": "WriteDeadLetters",
    "inputs": "WriteInputs",
    "embeddings": "WriteEmbeddings",
    "lsh_bands": "WriteLshBands",
    "paper_names": "WritePaperNames",
}
ONE_FILE_TABLES = frozenset({"dead_letter", "inputs", "lsh_bands"})


@dataclass
class PipelineOutputs:
    """The PCollections of a built pipeline, exposed for tests."""

    records: beam.PCollection
    dead_letters: beam.PCollection
    rows: beam.PCollection
    clusters: beam.PCollection


def build_pipeline(
    p: beam.Pipeline,
    inputs: list[str],
    output: str,
    dedup: DedupConfig,
    digest_year: int | None = None,
    shards: int = 4,
    embed: EmbedConfig | None = None,
    topics: Taxonomy | None = None,
    semantic: SemanticConfig | None = None,
    previous: UpdateSources | None = None,
    update_part: UpdatePartSource | None = None,
    prototype_cache: str | None = None,
) -> PipelineOutputs:
    """Wire the job, writing its tables under the version directory ``output``.

    ``semantic`` (merging revisions of one paper by embedding) needs ``embed``; it then
    rewrites the affected rows and the clusters table. ``previous`` (``--incremental``) adds
    the records of the part of an earlier version that the new dumps reach, its embeddings
    for reuse, and skips new records the update's plan joined to known clusters (the rest
    is copied beside the pipeline, see :mod:`beam_jobs.incremental`); ``update_part`` is that
    part (or the path of its file), for the revision merge to skip what the full run skips.
    ``prototype_cache`` keeps the taxonomy's embedded texts between local runs.
    """
    parsed = p | "ReadDigests" >> ReadDigests(inputs) | "ParseDigests" >> ParseDigests(digest_year)
    records, known_embeddings = parsed.records, None
    if previous is not None:
        if previous.plan is not None:
            records = records | "SkipJoinedCopies" >> SkipJoinedCopies(previous.plan)
        old = p | "ReadPreviousVersion" >> ReadPreviousVersion(
            previous.record_files, previous.embedding_files
        )
        records = (old.records, records) | "AllRecords" >> beam.Flatten()
        known_embeddings = old.embedding_tables
    clustered = records | "ClusterDuplicates" >> ClusterDuplicates(dedup)
    rows, clusters = clustered.rows, clustered.clusters
    tables = {
        "dead_letter": (
            parsed.dead_letters | "DeadLetterRows" >> beam.Map(dataclasses.asdict),
            DEAD_LETTER_SCHEMA,
        ),
        "inputs": (parsed.input_files, INPUTS_SCHEMA),
        "lsh_bands": (clustered.text_bands, LSH_BANDS_SCHEMA),
    }
    dim = None
    if embed is not None:
        dim = model_embedding_dim(embed.model_dir)
        papers = rows | "EmbedAndTagPapers" >> EmbedAndTagPapers(
            embed, topics, semantic, known_embeddings, update_part, prototype_cache
        )
        rows = papers.rows
        if papers.merges is not None:
            clusters = (clusters, papers.merges) | "MergeClusterSummaries" >> (
                MergeClusterSummaries()
            )
        tables["paper_names"] = (papers.names, PAPER_NAMES_SCHEMA)
        tables["embeddings"] = (
            papers.fresh_embeddings
            | "EmbeddingRows"
            >> beam.MapTuple(lambda key, vector: {"text_key": key, "embedding": vector}),
            embeddings_schema(dim),
        )
    rows = rows | "CountRowsWritten" >> beam.Map(counted, counter("rows_written"))
    tables["records"] = (rows, records_schema(dim) if dim else records_schema())
    tables["clusters"] = (clusters, CLUSTERS_SCHEMA)
    for name, (pcoll, schema) in tables.items():
        if pcoll is not None:
            pcoll | WRITERS[name] >> WriteParquetTable(
                table_dir(output, name),
                schema,
                temp_dir(output, name),
                1 if name in ONE_FILE_TABLES else shards,
            )
    return PipelineOutputs(parsed.records, parsed.dead_letters, rows, clusters)
