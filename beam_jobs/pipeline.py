"""The digestflow pipeline: dumps -> records -> clusters -> Parquet, plus its run summary.

``build_pipeline`` only wires composites (and returns the PCollections, for tests);
``run`` validates options, prepares the output directory, runs, and writes the summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from beam_jobs import layout, progress, update
from beam_jobs.options import (
    DigestflowOptions,
    UserError,
    dedup_config,
    embed_config,
    embedding_dim,
    semantic_config,
    taxonomy,
    unknown_options,
)
from transforms.dedup import ClusterDuplicates, DedupConfig
from transforms.embed import EmbedConfig
from transforms.enrich import EmbedAndTagPapers
from transforms.previous import ReadPreviousVersion
from transforms.read import NAMESPACE, ParseDigests, ReadDigests
from transforms.schema import (
    CLUSTERS_SCHEMA,
    DEAD_LETTER_SCHEMA,
    INPUTS_SCHEMA,
    TABLES,
    records_schema,
)
from transforms.semantic import MergeClusterSummaries, SemanticConfig
from transforms.tags import Taxonomy
from transforms.write import WriteParquetTable

# The in-process FnApiRunner: plain DirectRunner first tries to download Prism (offline: noise).
DEFAULT_RUNNER = "FnApiRunner"
SUMMARY_FILE = "run_summary.json"


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
    previous: str | None = None,
) -> PipelineOutputs:
    """Wire the job. ``semantic`` (merging revisions of one paper by embedding) needs
    ``embed``; it then rewrites the affected rows and the clusters table. ``previous`` (the
    root of an earlier version, for ``--incremental``) adds that version's records, dead letters
    and inputs, and its embeddings for reuse (see :mod:`beam_jobs.update`)."""
    parsed = p | "ReadDigests" >> ReadDigests(inputs) | "ParseDigests" >> ParseDigests(digest_year)
    records, input_rows = parsed.records, parsed.input_files
    dead_letter_rows = parsed.dead_letters | "DeadLetterRows" >> beam.Map(dataclasses.asdict)
    known_embeddings = None
    if previous is not None:
        template = embed.text_template if embed is not None else None
        old = p | "ReadPreviousVersion" >> ReadPreviousVersion(previous, template)
        records = (old.records, records) | "AllRecords" >> beam.Flatten()
        dead_letter_rows = (old.dead_letters, dead_letter_rows) | "AllDeadLetters" >> beam.Flatten()
        input_rows = (old.inputs, input_rows) | "AllInputs" >> beam.Flatten()
        known_embeddings = old.embeddings
    clustered = records | "ClusterDuplicates" >> ClusterDuplicates(dedup)
    rows, clusters = clustered.rows, clustered.clusters
    schema = records_schema()
    if embed is not None:
        papers = rows | "EmbedAndTagPapers" >> EmbedAndTagPapers(
            embed, topics, semantic, known_embeddings
        )
        rows = papers.rows
        if papers.merges is not None:
            clusters = (clusters, papers.merges) | "MergeClusterSummaries" >> (
                MergeClusterSummaries()
            )
        schema = records_schema(embedding_dim(embed.model_dir))
    rows | "WriteRecords" >> WriteParquetTable(
        table_dir(output, "records"), schema, temp_dir(output, "records"), shards
    )
    clusters | "WriteClusters" >> WriteParquetTable(
        table_dir(output, "clusters"), CLUSTERS_SCHEMA, temp_dir(output, "clusters"), shards
    )
    dead_letter_rows | "WriteDeadLetters" >> WriteParquetTable(
        table_dir(output, "dead_letter"), DEAD_LETTER_SCHEMA, temp_dir(output, "dead_letter"), 1
    )
    input_rows | "WriteInputs" >> WriteParquetTable(
        table_dir(output, "inputs"), INPUTS_SCHEMA, temp_dir(output, "inputs"), 1
    )
    return PipelineOutputs(parsed.records, parsed.dead_letters, rows, clusters)


def table_dir(output: str, table: str) -> str:
    return FileSystems.join(output, table)


def temp_dir(output: str, table: str) -> str:
    """Where a table's files are written before they are moved into place (removed after)."""
    return FileSystems.join(output, f"_tmp_{table}")


def is_remote(path: str) -> bool:
    return "://" in path


def pipeline_options(argv: list[str]) -> PipelineOptions:
    """Parse and validate flags; raise UserError with one clear message."""
    problems = unknown_options(argv)
    if problems:
        raise UserError("; ".join(problems))
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    ours = options.view_as(DigestflowOptions)
    if not ours.input:
        raise UserError("--input is required (a glob of digest dumps; repeatable)")
    if not ours.output:
        raise UserError("--output is required (a directory)")
    if ours.output_shards < 1:
        raise UserError("--output_shards must be >= 1")
    return options


def translate_only(options: PipelineOptions) -> bool:
    """True when ``pipeline.run()`` only translates the job and nothing executes: a Dataflow
    dry run (``--dry_run``, a TestOptions flag: Beam treats any value, even "False", as set),
    or writing a template (``--template_location``; the Flex Template launcher runs the
    pipeline this way). Then there is nothing to wait for, finalize or summarize, and no
    storage call may follow."""
    if options.view_as(TestOptions).dry_run:
        return True
    return bool(options.view_as(GoogleCloudOptions).template_location)


def check_offline_locations(options: PipelineOptions) -> None:
    """A dry run must stay offline: when neither --temp_location nor --staging_location is a
    valid gs://BUCKET/PATH, Beam's option validation tries to create a default bucket over
    the network (minutes of credential and HTTP retries). Refuse that up front."""
    runner = options.view_as(StandardOptions).runner or ""
    if not options.view_as(TestOptions).dry_run or not runner.endswith("DataflowRunner"):
        return
    cloud = options.view_as(GoogleCloudOptions)
    validator = PipelineOptionsValidator(options, runner)
    locations = ("temp_location", "staging_location")
    errors = [validator.validate_gcs_path(cloud, name) for name in locations]
    if all(errors):  # Beam uses one valid location for both
        raise UserError(
            "a dry run needs --temp_location or --staging_location as gs://BUCKET/PATH with a "
            "valid bucket name (else Beam tries to create a bucket online): " + errors[0][0]
        )


def check_inputs(patterns: list[str]) -> None:
    """Local patterns must match files before anything runs (remote ones are matched by the
    pipeline: no storage call may block a Dataflow submission)."""
    local = [pattern for pattern in patterns if not is_remote(pattern)]
    if not local:
        return
    results = FileSystems.match(local)
    empty = [r.pattern for r in results if not r.metadata_list]
    if empty:
        raise UserError("no file matches " + ", ".join(repr(p) for p in empty))


def prepare_output(output: str, overwrite: bool) -> str:
    """Refuse to mix a new run with an old one; with ``overwrite``, remove the old run.
    Returns the directory of the version this run writes (see :mod:`beam_jobs.layout`)."""
    root = FileSystems.join(output, layout.version_name(1))
    if is_remote(output):
        return root
    existing = [
        path
        for name in _run_entries(output)
        if FileSystems.exists(path := FileSystems.join(output, name))
    ]
    if existing and not overwrite:
        raise UserError(f"output {output!r} already holds a digestflow run; pass --overwrite")
    if existing:
        FileSystems.delete(existing)
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
    return root


def _run_entries(output: str) -> list[str]:
    """Names inside ``output`` that belong to digestflow runs: the manifest, version
    directories, and the flat tables of outputs written before versioning."""
    import os

    if not os.path.isdir(output):
        return []
    legacy = {*TABLES, *(f"_tmp_{t}" for t in TABLES), SUMMARY_FILE}
    return sorted(
        name
        for name in os.listdir(output)
        if name in legacy or name == layout.MANIFEST_FILE or layout.VERSION_PATTERN.fullmatch(name)
    )


def finalize_output(output: str) -> None:
    """Remove WriteToFiles' leftover temp directories, and give a table with no rows an
    empty Parquet file so its DuckDB view always works."""
    import pyarrow.parquet as pq

    for name, schema in TABLES.items():
        directory = table_dir(output, name)
        scratch = temp_dir(output, name)
        if FileSystems.exists(scratch):
            FileSystems.delete([scratch])
        if not FileSystems.match([FileSystems.join(directory, "*.parquet")])[0].metadata_list:
            FileSystems.mkdirs(directory) if not FileSystems.exists(directory) else None
            with FileSystems.create(FileSystems.join(directory, "part-empty.parquet")) as fh:
                pq.write_table(schema.empty_table(), fh)


def counters(result: Any) -> dict[str, int]:
    """Counters of our namespaces, committed values where the runner has them."""
    values: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        name = counter.key.metric.name
        namespace = counter.key.metric.namespace
        value = counter.committed if counter.committed is not None else counter.attempted
        key = name if namespace == NAMESPACE else f"{namespace}.{name}"
        values[key] = values.get(key, 0) + int(value or 0)
    return values


def summarize(found: dict[str, int], output: str, seconds: float) -> dict[str, Any]:
    dead_by_reason = {
        key.split(".", 1)[1]: value
        for key, value in sorted(found.items())
        if key.startswith("dead_letters.")
    }
    parsed = found.get("records_parsed", 0)
    carried = found.get("records_carried", 0)  # from the previous version (--incremental)
    written = found.get("rows_clustered", 0)
    return {
        "output": output,
        "files_matched": found.get("files_matched", 0),
        "records_parsed": parsed,
        "records_carried": carried,
        "rows_written": written,
        "dead_lettered": found.get("dead_letters", 0),
        "dead_letters_by_reason": dead_by_reason,
        # clusters found lexically, less those a semantic merge absorbed into another
        "clusters": found.get("clusters", 0) - found.get("semantic.merged_clusters", 0),
        "semantic_merges": found.get("semantic.merged_clusters", 0),
        "embedded_texts": found.get("embedded_texts", 0),
        "embedding_failures": found.get("embedding_failures", 0),
        "embeddings_reused": found.get("embeddings_reused", 0),
        "every_record_written_once": parsed + carried == written,
        "wall_seconds": round(seconds, 2),
        "counters": dict(sorted(found.items())),
    }


def unchanged_summary(output: str, plan: update.UpdatePlan) -> dict[str, Any]:
    """The summary of an update that found nothing new: no version is written."""
    return {
        "output": output,
        "unchanged": True,
        "version": plan.previous.version,
        "files_skipped_already_ingested": len(plan.skipped_files),
        "records_parsed": 0,
    }


def run(argv: list[str]) -> dict[str, Any] | None:
    """Run a digestflow job; returns the run summary (None when the job is only translated:
    a Dataflow dry run or a template, see :func:`translate_only`)."""
    options = pipeline_options(argv)
    ours = options.view_as(DigestflowOptions)
    config = dedup_config(ours)
    embed, topics, semantic = embed_config(ours), taxonomy(ours), semantic_config(ours)
    dry_run = translate_only(options)
    check_offline_locations(options)
    check_inputs(ours.input)
    settings = update.run_settings(config, embed)
    inputs, version, previous = ours.input, 1, None
    root = FileSystems.join(ours.output, layout.version_name(1))
    plan = None
    if ours.incremental:
        if ours.overwrite:
            raise UserError("--incremental adds to an output and --overwrite replaces it: pick one")
        plan = update.plan_update(ours.output, ours.input, settings)
        if not plan.new_files:
            return unchanged_summary(ours.output, plan)
        inputs, version, root = plan.new_files, plan.version, plan.root
        previous = plan.previous_root
        if not dry_run:
            update.clear_version_dir(root)
    elif not dry_run:
        root = prepare_output(ours.output, ours.overwrite)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(
        pipeline,
        inputs,
        root,
        config,
        ours.digest_year,
        ours.output_shards,
        embed,
        topics,
        semantic,
        previous,
    )
    # progress hook (beam_jobs/progress.py): live counters on stderr, --quiet silences them
    reporter = progress.Reporter.for_options(options, executes=not dry_run)
    result = reporter.run(pipeline)
    # end of progress hook
    if dry_run:
        return None
    result.wait_until_finish()
    finalize_output(root)
    summary = summarize(counters(result), ours.output, time.monotonic() - started)
    summary["version"] = version
    if plan is not None:
        summary["files_skipped_already_ingested"] = len(plan.skipped_files)
    with FileSystems.create(FileSystems.join(root, SUMMARY_FILE)) as fh:
        fh.write(json.dumps(summary, indent=2, default=str).encode())
    # The switch: until this rename, readers (and a failed run) keep the previous version.
    manifest = layout.Manifest(
        version=version,
        root=layout.version_name(version),
        extra={"settings": settings, "created": dt.datetime.now(dt.UTC).isoformat()},
    )
    layout.publish(ours.output, manifest)
    if plan is not None:
        update.retire_old_versions(ours.output, version)
    logging.getLogger(__name__).info("run summary: %s", summary)
    reporter.finish(summary)  # progress hook: the final summary on stderr
    return summary
