"""Launching a digestflow run: validate → plan → run → summarize → check → publish.

``run(argv)`` is ``digestflow run``. Each step is its own function: the options and configs
are validated before anything is read or written (:func:`prepare`), the run's target version
and inputs are planned (:func:`plan_target`; an update picks the dumps not ingested yet),
the job graph is built (:mod:`beam_jobs.pipeline`) and run, its counters are summarized and
checked (:mod:`beam_jobs.summary`), and only then is the new version published
(:func:`commit`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from beam_jobs import progress
from beam_jobs.errors import UserError
from beam_jobs.incremental import background as update_background
from beam_jobs.incremental.dumps import exact_pattern, new_dumps
from beam_jobs.incremental.settings import run_settings
from beam_jobs.options import (
    DigestflowOptions,
    check_embedding_model,
    dedup_config,
    embed_config,
    is_remote_runner,
    semantic_config,
    taxonomy,
    unknown_options,
)
from beam_jobs.pipeline import build_pipeline
from beam_jobs.store import commits, versions
from beam_jobs.store.commits import ConcurrentCommit
from beam_jobs.store.tables import finalize_tables, listing_manifest, table_files
from beam_jobs.summary import check_complete, counters, summarize, unchanged_summary, write_summary
from transforms.dedup.duplicates import DedupConfig
from transforms.enrich.embed import EmbedConfig
from transforms.enrich.encoders import default_cache_dir
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.enrich.tags.tagging import Taxonomy
from transforms.incremental.read_back import UpdateSources

# The in-process FnApiRunner: plain DirectRunner first tries to download Prism (offline: noise).
DEFAULT_RUNNER = "FnApiRunner"
MAX_WORKERS_PER_CORE = 4


@dataclass(frozen=True)
class Job:
    """A validated ``digestflow run``: the Beam options and the configs built from them."""

    options: PipelineOptions
    ours: DigestflowOptions
    dedup: DedupConfig
    embed: EmbedConfig | None
    topics: Taxonomy | None
    semantic: SemanticConfig | None
    settings: dict[str, Any]  # what an update must share with the output (incremental)
    translate_only: bool


@dataclass(frozen=True)
class RunTarget:
    """What a run reads and which version it writes."""

    inputs: list[str]
    version: int
    root: str
    previous: str | None = None  # root of the version an incremental run extends
    skipped: int = 0  # dumps an incremental run found already ingested
    new_files: tuple[str, ...] = ()  # the files an incremental run adds (paths, not patterns)
    retried: tuple[str, ...] = ()  # of those, files that could not be read before


# ---- validate --------------------------------------------------------------------------


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
    if ours.keep_versions < versions.KEEP_VERSIONS:
        raise UserError(
            f"--keep_versions must be >= {versions.KEEP_VERSIONS} (the current version and the previous "
            f"one, which a reader may still be scanning), got {ours.keep_versions}"
        )
    workers = options.view_as(DirectOptions).direct_num_workers
    limit = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if not 0 <= workers <= limit:
        # the in-process runner starts every worker at once: hundreds of them never finish
        raise UserError(
            f"--direct_num_workers must be from 0 (one per core) to {limit} on this machine, "
            f"got {workers}"
        )
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
    local = [pattern for pattern in patterns if not versions.is_remote(pattern)]
    if not local:
        return
    for pattern in local:
        if os.path.isdir(pattern):  # matched as itself: it would be one unreadable "file"
            suggestion = os.path.join(pattern, "*.txt")
            raise UserError(f"--input {pattern} is a directory; did you mean {suggestion!r}?")
    results = FileSystems.match(local)
    empty = [r.pattern for r in results if not r.metadata_list]
    if empty:
        raise UserError("no file matches " + ", ".join(repr(p) for p in empty))


def prepare(argv: list[str]) -> Job:
    """Every check that needs no output directory: options, configs, inputs."""
    options = pipeline_options(argv)
    ours = options.view_as(DigestflowOptions)
    dedup, embed = dedup_config(ours), embed_config(ours)
    check_embedding_model(embed, options.view_as(StandardOptions).runner)
    topics, semantic = taxonomy(ours), semantic_config(ours)
    check_offline_locations(options)
    check_inputs(ours.input)
    settings = run_settings(dedup, embed, ours.digest_year, semantic, topics)
    return Job(options, ours, dedup, embed, topics, semantic, settings, translate_only(options))


# ---- plan ------------------------------------------------------------------------------


def plan_target(job: Job) -> RunTarget:
    """The version a run writes and the inputs it reads (an update: the new dumps only)."""
    ours = job.ours
    inputs = [p if versions.is_remote(p) else os.path.abspath(p) for p in ours.input]
    if ours.incremental:
        if ours.overwrite:
            raise UserError("--incremental adds to an output and --overwrite replaces it: pick one")
        if job.translate_only and not job.options.view_as(TestOptions).dry_run:
            raise UserError(
                "--incremental plans the update from the existing output when it is launched, "
                "so it cannot be baked into a template; launch the update directly (a "
                "--dry_run of it translates offline)"
            )
        found = new_dumps(ours.output, inputs, job.settings)
        # A dry run plans as an update does (reading the output) but writes the plan into
        # a scratch directory: the output is left untouched.
        root = tempfile.mkdtemp(prefix="digestflow-dry-run-") if job.translate_only else found.root
        return RunTarget(
            # the pipeline matches its inputs again: exactly these files, not globs
            [exact_pattern(path) for path in found.new_files],
            found.version,
            root,
            found.previous_root,
            len(found.skipped),
            tuple(found.new_files),
            tuple(found.retried),
        )
    if job.translate_only:  # nothing is written, and no storage call may happen
        return RunTarget(inputs, 1, FileSystems.join(ours.output, versions.version_name(1)))
    version, root = versions.prepare_output(ours.output, ours.overwrite)
    return RunTarget(inputs, version, root)


def start_update(
    job: Job, target: RunTarget
) -> tuple[update_background.BackgroundUpdate, UpdateSources]:
    """An update finds the part it clusters again while the graph is built, and writes what
    supersedes the previous version while the job runs (:mod:`beam_jobs.incremental.background`);
    its DoFns read the part from a file."""
    request = update_background.UpdateRequest(
        target.previous,
        target.root,
        target.new_files,
        job.dedup,
        job.semantic,
        job.ours.digest_year,
        target.retried,
        job.embed,
    )
    running = update_background.BackgroundUpdate(request).start()
    embedding_files = None
    if job.embed:
        embedding_files = list(table_files(target.previous, "embeddings"))
        if request.planned_embeddings is not None:
            embedding_files.append(request.planned_embeddings)
    sources = UpdateSources(
        record_files=[running.part_records],
        embedding_files=embedding_files,
        plan=running.part_file,
    )
    return running, sources


def prototype_cache(job: Job) -> str | None:
    """Where a local run keeps the taxonomy's embedded texts between runs (beside the ONNX
    exports); a remote job embeds them on its workers."""
    if job.embed is None or is_remote_runner(job.options.view_as(StandardOptions).runner):
        return None
    root = job.embed.cache_dir or str(default_cache_dir())
    return os.path.join(root, "prototypes")


# ---- run -------------------------------------------------------------------------------


def run(argv: list[str]) -> dict[str, Any] | None:
    """Run a digestflow job; returns the run summary (None when the job is only translated:
    a Dataflow dry run or a template, see :func:`translate_only`)."""
    job = prepare(argv)
    started = time.monotonic()
    target = plan_target(job)
    if not target.inputs:
        return unchanged_summary(job.ours.output, target.version - 1, target.skipped)
    running = sources = None
    if target.previous is not None:
        running, sources = start_update(job, target)
    # Live counters on stderr while the job runs (--quiet silences them).
    reporter = progress.Reporter.for_options(job.options, executes=not job.translate_only)
    pipeline = beam.Pipeline(options=job.options)
    build_pipeline(
        pipeline,
        target.inputs,
        target.root,
        job.dedup,
        digest_year=job.ours.digest_year,
        shards=job.ours.output_shards,
        embed=job.embed,
        topics=job.topics,
        semantic=job.semantic,
        previous=sources,
        update_part=running.part_file if running is not None else None,
        prototype_cache=prototype_cache(job),
    )
    try:
        part = running.wait_planned() if running is not None else None
        result = reporter.run(pipeline)
        if job.translate_only:
            if running is not None:  # a dry run of an update: drop its scratch plan
                running.abandon()
                versions.delete_dir(target.root)
            return None
        result.wait_until_finish()
        unchanged = running.finish() if running is not None else None
    except BaseException:
        if running is not None:
            running.abandon()
            if job.translate_only:
                versions.delete_dir(target.root)
        raise
    found = counters(result)
    summary = summarize(found, job.ours.output, time.monotonic() - started, unchanged)
    summary["version"] = target.version
    if job.ours.incremental:
        summary["files_skipped_already_ingested"] = target.skipped
        summary["update_part"] = part
        if part is not None:  # the plan embedded these texts, the job reused them
            summary["embedded_texts"] += part.get("planned_embeddings", 0)
    check_complete(summary, found, part, target.root)
    carried = carried_files(job.ours.output, target, part) if running is not None else {}
    commit(job.ours.output, target, summary, job.settings, job.ours.keep_versions, carried)
    logging.getLogger(__name__).info("run summary: %s", summary)
    reporter.finish(summary)
    return summary


# ---- publish ---------------------------------------------------------------------------


def carried_files(
    output: str, target: RunTarget, part: dict[str, int]
) -> dict[str, tuple[commits.DataFile, ...]]:
    """The previous version's files an update's version lists as they are (data files
    holding rows, and delete files), by commit-record name: every table's, or only those
    kept whole when the previous version had no update index."""
    kept = update_background.kept_tables(bool(part["everything"]))
    listed = commits.listing(output, target.version - 1)
    if listed is None:  # written before the commit log: described (and hashed) once
        found = {table: table_files(target.previous, table) for table in kept}
        listed = commits.files_of({"files": commits.describe_files(output, found)})
    return {
        name: tuple(entry for entry in entries if entry.rows)
        for name, entries in listed.items()
        if name.split(".", 1)[0] in kept
    }


def commit(
    output: str,
    target: RunTarget,
    summary: dict[str, Any],
    settings: dict[str, Any],
    keep: int = versions.KEEP_VERSIONS,
    carried: Mapping[str, tuple[commits.DataFile, ...]] | None = None,
) -> None:
    """Complete the version, then switch the manifest to it: until that switch, readers
    (and a failed run) keep the previous version. ``carried``: files of earlier versions
    it lists as they are (an update)."""
    carried = carried or {}
    finalize_tables(target.root, skip={name for name, entries in carried.items() if entries})
    write_summary(target.root, summary)
    extra = {
        "settings": settings,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "keep_versions": keep,
    }
    manifest = listing_manifest(output, target.version, target.root, extra, carried)
    try:
        versions.publish(output, manifest)
    except ConcurrentCommit:
        with contextlib.suppress(OSError):  # left behind, the next retirement takes it
            versions.delete_dir(target.root)  # never published: nobody reads it
        raise
    versions.retire_versions(output, target.version, keep=keep)


def publish_translated_run(output: str) -> int:
    """Make the output of a job that ran detached (a Flex Template launch: the launcher only
    translates, see :func:`translate_only`) readable: complete its version directory
    (``v000001``) and write the manifest. Returns the version published."""
    if versions.read_manifest(output) is not None:
        raise UserError(f"{output!r} already has a manifest: nothing to publish")
    root = FileSystems.join(output, versions.version_name(1))
    if not versions.dir_exists(FileSystems.join(root, "records")):
        raise UserError(f"{output!r} has no finished job output in {versions.version_name(1)}/")
    finalize_tables(root)
    created = dt.datetime.now(dt.UTC).isoformat()
    versions.publish(output, listing_manifest(output, 1, root, {"created": created}))
    return 1
