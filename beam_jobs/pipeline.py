"""The digestflow pipeline: dumps -> records -> clusters -> Parquet, plus its run summary.

``build_pipeline`` only wires composites (and returns the PCollections, for tests);
``run`` validates options, prepares the output directory, runs, and writes the summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from beam_jobs import carry, layout, progress, update
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
from transforms.previous import ReadPreviousVersion, SkipJoinedCopies, UpdateSources
from transforms.read import NAMESPACE, ParseDigests, ReadDigests, counted
from transforms.schema import (
    CLUSTERS_SCHEMA,
    DEAD_LETTER_SCHEMA,
    INPUTS_SCHEMA,
    LSH_BANDS_SCHEMA,
    PAPER_NAMES_SCHEMA,
    TABLES,
    embeddings_schema,
    records_schema,
)
from transforms.semantic import MergeClusterSummaries, SemanticConfig
from transforms.tags import Taxonomy
from transforms.write import WriteParquetTable

# The in-process FnApiRunner: plain DirectRunner first tries to download Prism (offline: noise).
DEFAULT_RUNNER = "FnApiRunner"
SUMMARY_FILE = "run_summary.json"
KEEP_VERSIONS = 2  # the current one, and the one a reader may still be scanning


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
) -> PipelineOutputs:
    """Wire the job. ``semantic`` (merging revisions of one paper by embedding) needs
    ``embed``; it then rewrites the affected rows and the clusters table. ``previous`` (the
    root of an earlier version, and what to read of it, for ``--incremental``) adds the
    records of its affected part and its embeddings for reuse, and skips new records the
    plan joined to known clusters; the rest is copied beside the pipeline (see
    :mod:`beam_jobs.update`)."""
    parsed = p | "ReadDigests" >> ReadDigests(inputs) | "ParseDigests" >> ParseDigests(digest_year)
    records, input_rows = parsed.records, parsed.input_files
    dead_letter_rows = parsed.dead_letters | "DeadLetterRows" >> beam.Map(dataclasses.asdict)
    known_embeddings = None
    if previous is not None:
        if previous.plan is not None:
            records = records | "SkipJoinedCopies" >> SkipJoinedCopies(previous.plan)
        old = p | "ReadPreviousVersion" >> ReadPreviousVersion(
            previous.root, previous.part_records, embed is not None
        )
        records = (old.records, records) | "AllRecords" >> beam.Flatten()
        known_embeddings = old.embedding_tables
    clustered = records | "ClusterDuplicates" >> ClusterDuplicates(dedup)
    rows, clusters = clustered.rows, clustered.clusters
    if clustered.text_bands is not None:
        clustered.text_bands | "WriteLshBands" >> WriteParquetTable(
            table_dir(output, "lsh_bands"), LSH_BANDS_SCHEMA, temp_dir(output, "lsh_bands"), 1
        )
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
        dim = embedding_dim(embed.model_dir)
        schema = records_schema(dim)
        if papers.names is not None:
            papers.names | "WritePaperNames" >> WriteParquetTable(
                table_dir(output, "paper_names"),
                PAPER_NAMES_SCHEMA,
                temp_dir(output, "paper_names"),
                shards,
            )
        (
            papers.fresh_embeddings
            | "EmbeddingRows"
            >> beam.MapTuple(lambda key, vector: {"text_key": key, "embedding": vector})
            | "WriteEmbeddings"
            >> WriteParquetTable(
                table_dir(output, "embeddings"),
                embeddings_schema(dim),
                temp_dir(output, "embeddings"),
                shards,
            )
        )
    rows = rows | "CountRowsWritten" >> beam.Map(
        counted, Metrics.counter(NAMESPACE, "rows_written")
    )
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


is_remote = layout.is_remote


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


def prepare_output(output: str, overwrite: bool) -> tuple[int, str]:
    """Refuse to mix a new run with an old one. Returns the version this run writes and its
    directory: the next version number, so with ``overwrite`` the old run stays readable
    (and intact if this run fails) until the new manifest replaces it."""
    manifest = layout.read_manifest(output)
    legacy = _flat_tables(output)
    if (manifest is not None or legacy) and not overwrite:
        raise UserError(f"output {output!r} already holds a digestflow run; pass --overwrite")
    if legacy:
        FileSystems.delete(legacy)
    version = manifest.version + 1 if manifest is not None else 1
    root = FileSystems.join(output, layout.version_name(version))
    layout.delete_dir(root)  # left by a failed attempt: no manifest points there
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


def finalize_output(root: str) -> None:
    """Remove WriteToFiles' leftover temp directories, and give a table with no rows an
    empty Parquet file so its DuckDB view always works."""
    for name, schema in TABLES.items():
        directory = table_dir(root, name)
        layout.delete_dir(temp_dir(root, name))
        if not FileSystems.match([FileSystems.join(directory, "*.parquet")])[0].metadata_list:
            if not is_remote(directory) and not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
            with FileSystems.create(FileSystems.join(directory, "part-empty.parquet")) as fh:
                pq.write_table(schema.empty_table(), fh)


def counters(result: Any) -> dict[str, int]:
    """Counters of our namespaces, committed values where the runner has them."""
    return progress.counter_values(result.metrics().query(MetricsFilter())["counters"])


def summarize(
    found: dict[str, int], output: str, seconds: float, copied: dict[str, int] | None = None
) -> dict[str, Any]:
    """The run summary. ``copied``: rows an update copied unchanged, per table."""
    dead_by_reason = {
        key.split(".", 1)[1]: value
        for key, value in sorted(found.items())
        if key.startswith("dead_letters.")
    }
    parsed = found.get("records_parsed", 0)
    copied_records = (copied or {}).get("records", 0)
    # from the previous version (--incremental): clustered again, or copied as they were
    reclustered = found.get("records_reclustered", 0)
    carried = reclustered + copied_records
    joined = (copied or {}).get("joined_copies", 0)  # rows of copies joined by the plan
    # counted on the way into the records writer, plus the rows written beside it
    written = found.get("rows_written", 0) + copied_records + joined
    return {
        "output": output,
        "files_matched": found.get("files_matched", 0),
        "records_parsed": parsed,
        "records_carried": carried,
        "records_reclustered": reclustered,
        "records_copied": copied_records,
        "records_joined_known": joined,
        "rows_written": written,
        "dead_lettered": found.get("dead_letters", 0),
        "dead_letters_by_reason": dead_by_reason,
        # clusters found lexically, less those a semantic merge absorbed into another, plus
        # (an update) the clusters it copied unchanged
        "clusters": found.get("clusters", 0)
        - found.get("semantic.merged_clusters", 0)
        + (copied or {}).get("clusters", 0),
        "semantic_merges": found.get("semantic.merged_clusters", 0),
        "embedded_texts": found.get("embedded_texts", 0),
        "embedding_failures": found.get("embedding_failures", 0),
        "embeddings_reused": found.get("embeddings_reused", 0),
        "every_record_written_once": parsed + carried == written,
        "wall_seconds": round(seconds, 2),
        "counters": dict(sorted(found.items())),
    }


def unchanged_summary(output: str, plan: RunPlan) -> dict[str, Any]:
    """The summary of an update that found nothing new: no version is written."""
    return {
        "output": output,
        "unchanged": True,
        "version": plan.version - 1,
        "files_skipped_already_ingested": plan.skipped,
        "records_parsed": 0,
    }


@dataclass(frozen=True)
class RunPlan:
    """What a run reads and which version it writes."""

    inputs: list[str]
    version: int
    root: str
    previous: str | None = None  # root of the version an incremental run extends
    skipped: int = 0  # dumps an incremental run found already ingested
    new_files: tuple[str, ...] = ()  # the files an incremental run adds (paths, not patterns)
    retried: tuple[str, ...] = ()  # of those, files that could not be read before


def plan_run(ours: DigestflowOptions, settings: dict[str, Any], dry_run: bool) -> RunPlan:
    inputs = [p if is_remote(p) else os.path.abspath(p) for p in ours.input]
    if ours.incremental:
        if ours.overwrite:
            raise UserError("--incremental adds to an output and --overwrite replaces it: pick one")
        if dry_run:
            raise UserError(
                "--incremental reads the existing output to plan the update, which a dry run "
                "or template must not do; translate the job without --incremental"
            )
        found = update.plan_update(ours.output, inputs, settings)
        layout.delete_dir(found.root)  # left by a failed attempt: no manifest points there
        return RunPlan(
            # the pipeline matches its inputs again: exactly these files, not globs
            [update.exact_pattern(path) for path in found.new_files],
            found.version,
            found.root,
            found.previous_root,
            len(found.skipped),
            tuple(found.new_files),
            tuple(found.retried),
        )
    if dry_run:  # nothing is written, and no storage call may happen
        return RunPlan(inputs, 1, FileSystems.join(ours.output, layout.version_name(1)))
    version, root = prepare_output(ours.output, ours.overwrite)
    return RunPlan(inputs, version, root)


class IncompleteRun(RuntimeError):
    """The counters do not add up: the version is not published."""


def check_complete(
    summary: dict[str, Any], found: dict[str, int], part: dict[str, int] | None, root: str
) -> None:
    """Refuse to publish a version that lost or duplicated records, or (an update) whose
    job did not see what its plan saw. The summary is left in the unpublished version."""
    problems = []
    if not summary["every_record_written_once"]:
        problems.append(
            f"{summary['records_parsed']} records parsed + {summary['records_carried']} "
            f"carried != {summary['rows_written']} written"
        )
    if part is not None and not part["everything"]:
        joined = found.get("records_joined_known", 0)
        if joined != part["joined_copies"]:
            problems.append(
                f"the job skipped {joined} joined copies, the plan {part['joined_copies']}"
            )
        if found.get("records_parsed", 0) != part["new_records"]:
            problems.append(
                f"the job parsed {found.get('records_parsed', 0)} new records, the plan "
                f"{part['new_records']} (did a dump change during the update?)"
            )
    if problems:
        with FileSystems.create(FileSystems.join(root, SUMMARY_FILE)) as fh:
            fh.write(json.dumps(summary, indent=2, default=str).encode())
        raise IncompleteRun(
            "not published, the output keeps its current version: " + "; ".join(problems)
        )


def commit(output: str, plan: RunPlan, summary: dict[str, Any], settings: dict[str, Any]) -> None:
    """Complete the version, then switch the manifest to it: until that switch, readers
    (and a failed run) keep the previous version."""
    finalize_output(plan.root)
    with FileSystems.create(FileSystems.join(plan.root, SUMMARY_FILE)) as fh:
        fh.write(json.dumps(summary, indent=2, default=str).encode())
    manifest = layout.Manifest(
        version=plan.version,
        root=layout.version_name(plan.version),
        extra={"settings": settings, "created": dt.datetime.now(dt.UTC).isoformat()},
    )
    layout.publish(output, manifest)
    layout.retire_versions(output, plan.version, keep=KEEP_VERSIONS)


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
    settings = update.run_settings(config, embed, ours.digest_year, semantic, topics)
    started = time.monotonic()
    plan = plan_run(ours, settings, dry_run)
    if not plan.inputs:
        return unchanged_summary(ours.output, plan)
    # An update plans the part it clusters again while the graph is built, and copies the
    # rest while the job runs (beam_jobs.carry); its DoFns read the plan from a file.
    background = previous = None
    if plan.previous is not None:
        request = carry.UpdateRequest(
            plan.previous,
            plan.root,
            plan.new_files,
            config,
            semantic,
            ours.digest_year,
            plan.retried,
        )
        background = carry.BackgroundUpdate(request).start()
        previous = UpdateSources(plan.previous, [background.part_records], background.plan_file)
        if semantic is not None:
            semantic = dataclasses.replace(semantic, update_part=background.plan_file)
    # Live counters on stderr while the job runs (--quiet silences them).
    reporter = progress.Reporter.for_options(options, executes=not dry_run)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(
        pipeline,
        plan.inputs,
        plan.root,
        config,
        digest_year=ours.digest_year,
        shards=ours.output_shards,
        embed=embed,
        topics=topics,
        semantic=semantic,
        previous=previous,
    )
    try:
        part = background.wait_planned() if background is not None else None
        result = reporter.run(pipeline)
        if dry_run:
            return None
        result.wait_until_finish()
        copied = background.finish() if background is not None else None
    except BaseException:
        if background is not None:
            background.abandon()
        raise
    found = counters(result)
    summary = summarize(found, ours.output, time.monotonic() - started, copied)
    summary["version"] = plan.version
    if ours.incremental:
        summary["files_skipped_already_ingested"] = plan.skipped
        summary["update_part"] = part
    check_complete(summary, found, part, plan.root)
    commit(ours.output, plan, summary, settings)
    logging.getLogger(__name__).info("run summary: %s", summary)
    reporter.finish(summary)
    return summary


def publish_translated_run(output: str) -> int:
    """Make the output of a job that ran detached (a Flex Template launch: the launcher only
    translates, see :func:`translate_only`) readable: complete its version directory
    (``v000001``) and write the manifest. Returns the version published."""
    if layout.read_manifest(output) is not None:
        raise UserError(f"{output!r} already has a manifest: nothing to publish")
    root = FileSystems.join(output, layout.version_name(1))
    if not layout.dir_exists(FileSystems.join(root, "records")):
        raise UserError(f"{output!r} has no finished job output in {layout.version_name(1)}/")
    finalize_output(root)
    created = dt.datetime.now(dt.UTC).isoformat()
    layout.publish(output, layout.Manifest(1, layout.version_name(1), {"created": created}))
    return 1
