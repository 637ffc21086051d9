"""Command-line options of a digestflow run, as one Beam ``PipelineOptions`` subclass.

Every flag here travels with the pipeline (Dataflow shows them on the job page); algorithm
parameters are turned into frozen config dataclasses by :func:`dedup_config` and validated
before the graph is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib

from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.errors import UserError
from beam_jobs.internals import parse_known_flags
from transforms.dedup.clusters import CANONICAL_POLICIES
from transforms.dedup.duplicates import DedupConfig
from transforms.dedup.lsh import DEFAULT_SHARDS
from transforms.dedup.minhash import MinHashConfig
from transforms.enrich.embed import EmbedConfig, model_input_limit
from transforms.enrich.encoders import CLI_BACKENDS, DEFAULT_BACKEND, missing_runtime
from transforms.enrich.semantic.rule import DEFAULT_THRESHOLD as DEFAULT_SEMANTIC_THRESHOLD
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.enrich.semantic.vectors import VectorLSH
from transforms.enrich.tags.head import PACKAGED_HEAD, file_sha256, packaged_head_applies
from transforms.enrich.tags.taxonomy import Taxonomy, load_tag_examples, load_taxonomy


class DigestflowOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input",
            action="append",
            default=None,
            help="Glob of digest dumps (local or gs://; plain, .gz or .bz2). Repeatable.",
        )
        parser.add_argument("--output", default=None, help="Output directory (local or gs://).")
        parser.add_argument(
            "--overwrite",
            action="store_true",
            default=False,
            help="Replace an existing output directory instead of refusing to run.",
        )
        parser.add_argument(
            "--incremental",
            action="store_true",
            default=False,
            help="(Beam's own --update is about streaming jobs.) Add the --input dumps to the "
            "existing output: dumps already ingested (same bytes) are skipped, only the part "
            "of the corpus the new records reach is clustered again (the rest is copied), "
            "earlier embeddings are reused; a new version replaces the old atomically.",
        )
        parser.add_argument(
            "--digest_year",
            type=digest_year,
            default=None,
            help="Year for 'Mar 13'-style date lines (default: from the file name or path, "
            "else the file's last-modified year).",
        )
        parser.add_argument(
            "--canonical_policy",
            choices=sorted(CANONICAL_POLICIES),
            default="earliest",
            help="Which record of a cluster is canonical: earliest digest_date (then "
            "source_file, record_index), latest, or longest abstract.",
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=0.8,
            help="Near-duplicate Jaccard threshold (word 3-shingles, MinHash estimate).",
        )
        parser.add_argument("--num_perm", type=int, default=128, help="MinHash permutations.")
        parser.add_argument(
            "--shingle", choices=["word", "char"], default="word", help="Shingle kind."
        )
        parser.add_argument(
            "--lsh_shards",
            type=int,
            default=DEFAULT_SHARDS,
            help="LSH buckets are formed in memory per shard; a shard holds distinct texts x "
            "bands / shards entries. Raise for very large corpora (docs/design.md).",
        )
        parser.add_argument(
            "--no_near_duplicates",
            dest="near_duplicates",
            action="store_false",
            default=True,
            help="Cluster exact duplicates only (skip MinHash-LSH).",
        )
        parser.add_argument(
            "--no_embeddings",
            dest="embeddings",
            action="store_false",
            default=True,
            help="Skip embedding and tagging (embedding/tags columns stay null).",
        )
        parser.add_argument(
            "--embedding_model",
            default=None,
            help="Local sentence-transformers directory (default: the packaged all-MiniLM-L6-v2).",
        )
        parser.add_argument(
            "--max_seq_length", type=int, default=256, help="Word pieces embedded per text."
        )
        parser.add_argument(
            "--embedding_backend",
            choices=CLI_BACKENDS,
            default=DEFAULT_BACKEND,
            help=f"{DEFAULT_BACKEND} (default): the model exported once to ONNX (into "
            "~/.cache/digestflow; `make setup` and the container do it ahead) and run by "
            "OpenVINO; onnx: the same export run by ONNX Runtime (the 'onnx' extra); torch: "
            "sentence-transformers itself. These give the same vectors. openvino-int8: the "
            "export quantized to int8 (NNCF, packaged calibration texts; made on first use), "
            "~2x faster than openvino, vectors within cosine 0.99 of the others and the same "
            "merges and tags on the measured papers (docs/benchmarks.md). An update must use "
            "the backend of the output it extends.",
        )
        parser.add_argument(
            "--text_template",
            default=None,
            help="Text embedded per paper, with {title} and {abstract} (default '{title} {abstract}'"
            " with a period added to the title).",
        )
        parser.add_argument(
            "--taxonomy", default=None, help="Topic taxonomy TOML (default: the shipped one)."
        )
        parser.add_argument(
            "--tag_examples",
            default=None,
            help="Labelled papers (JSON lines: title + abstract or text, and tags) that train "
            "a linear head on top of the zero-shot topic scores (optional; docs/benchmarks.md).",
        )
        parser.add_argument(
            "--tag_head",
            choices=("packaged", "none"),
            default="packaged",
            help="Topic scores: 'packaged' (default) adds the shipped head trained on labelled "
            "papers to the zero-shot scores (used with the packaged model, text template and "
            "taxonomy only; --tag_examples trains one instead); 'none': zero-shot only.",
        )
        parser.add_argument(
            "--semantic_threshold",
            type=semantic_threshold,
            default=DEFAULT_SEMANTIC_THRESHOLD,
            help="Merge clusters that are revisions of one paper: canonicals with embedding "
            f"cosine >= this (default {DEFAULT_SEMANTIC_THRESHOLD}), or a lower bar when they "
            "share a name, a title, a code link, the first sentence or many words (see "
            "docs/design.md); 0, a negative value or 'off' disables. Ignored with "
            "--no_embeddings.",
        )
        parser.add_argument(
            "--semantic_vector_bands",
            type=int,
            default=0,
            help="Revision candidates by embedding: canonicals that share one of this many "
            "random-hyperplane band keys of their vectors are compared, besides those that "
            f"share a name (default 0: names only; {VectorLSH.bands} is the measured setting; "
            "its candidate pairs grow fast with the corpus, see docs/design.md).",
        )
        parser.add_argument(
            "--semantic_vector_bits",
            type=int,
            default=VectorLSH.bits,
            help=f"Hyperplane signs per band key (default {VectorLSH.bits}): more bits, "
            "smaller buckets, fewer candidates at a given cosine (docs/benchmarks.md, the "
            "recall curve).",
        )
        parser.add_argument(
            "--output_shards",
            type=int,
            default=4,
            help="Shards of the Parquet sink's spill path only: a table gets one file per bundle "
            "that wrote rows, not this many (docs/design.md, How Parquet files are written).",
        )
        parser.add_argument(
            "--keep_versions",
            type=int,
            default=2,
            help="Published versions of --output to keep: the current one and those before "
            "it, which 'digestflow report DIR changes --since VERSION' compares with (at least "
            "2: a reader may still be scanning the previous one).",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            default=False,
            help="No progress lines and no final summary on stderr (beam_jobs/progress.py).",
        )


# The years a file name's date may carry (transforms/ingest/parse.py): one outside them is a
# typo, and a silently ignored one would date every record by its file name instead.
DIGEST_YEARS = range(1900, 2100)


def digest_year(text: str) -> int:
    """``--digest_year`` value: a four-digit year in :data:`DIGEST_YEARS`."""
    try:
        year = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a year, got {text!r}") from None
    if year not in DIGEST_YEARS:
        raise argparse.ArgumentTypeError(
            f"expected a year from {DIGEST_YEARS.start} to {DIGEST_YEARS.stop - 1}, got {year}"
        )
    return year


def semantic_threshold(text: str) -> float:
    """``--semantic_threshold`` value: a cosine, or 'off' (0.0: disabled)."""
    if str(text).strip().lower() in ("off", "none", "no"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


def unknown_options(argv: list[str]) -> list[str]:
    """Flags no PipelineOptions class knows, each with a suggestion when one is close.

    Beam itself only logs and drops such flags; a typo in ``--output`` must not run a job.
    """
    if "--" in argv:
        # argparse would read every flag after it as a positional argument.
        return ["'--' is not needed here: digestflow run takes only --options (remove the '--')"]
    try:
        unknown, known = parse_known_flags(argv)
    except argparse.ArgumentError as error:
        return [str(error)]
    messages = []
    for arg in unknown:
        name = arg.split("=", 1)[0]
        if not name.startswith("-"):
            messages.append(f"unexpected argument {arg!r}")
            continue
        close = difflib.get_close_matches(name, known, n=1)
        messages.append(
            f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else "")
        )
    return messages


def dedup_config(options: DigestflowOptions) -> DedupConfig:
    try:
        minhash = MinHashConfig(
            num_perm=options.num_perm, shingle=options.shingle, threshold=options.threshold
        )
        return DedupConfig(
            canonical_policy=options.canonical_policy,
            near_duplicates=options.near_duplicates,
            minhash=minhash,
            lsh_shards=options.lsh_shards,
        )
    except ValueError as error:
        raise UserError(str(error)) from None


def embed_config(options: DigestflowOptions) -> EmbedConfig | None:
    """The embedding configuration, or None when embeddings are switched off."""
    if not options.embeddings:
        return None
    missing = missing_runtime(options.embedding_backend)
    if missing:
        raise UserError(missing)
    kwargs: dict = {
        "max_seq_length": options.max_seq_length,
        "backend": options.embedding_backend,
    }
    if options.embedding_model:
        kwargs["model"] = options.embedding_model
    if options.text_template:
        kwargs["text_template"] = options.text_template
    try:
        return EmbedConfig(**kwargs)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(str(error)) from None


def is_remote_runner(runner: str) -> bool:
    """True when the job runs on other machines (Dataflow), whose disks this one cannot see."""
    return "dataflow" in runner.lower()


def check_embedding_model(config: EmbedConfig | None, runner: str) -> None:
    """Before a local run starts: the model directory holds a model whose inputs can be
    ``--max_seq_length`` word pieces long (longer ones overflow its position embeddings and
    fail their whole batch). A Dataflow job's model lives in the worker image, which this
    machine cannot see: its workers check it when they load it."""
    if config is None or is_remote_runner(runner):
        return
    try:
        limit = model_input_limit(config.model_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"--embedding_model {error}") from None
    if limit is not None and config.max_seq_length > limit:
        raise UserError(
            f"--max_seq_length {config.max_seq_length} is more than the embedding model takes "
            f"({limit} word pieces, {config.model_dir})"
        )


def semantic_config(options: DigestflowOptions) -> SemanticConfig | None:
    """The semantic-merge configuration, or None when it is off (threshold <= 0, or no
    embeddings to compare)."""
    threshold = options.semantic_threshold
    if not threshold <= 1.0:  # checked even where unused (--no_embeddings): nan too
        raise UserError(f"--semantic_threshold: expected a cosine up to 1, got {threshold!r}")
    try:  # checked even where unused, like the threshold
        vectors = VectorLSH(bits=options.semantic_vector_bits, bands=options.semantic_vector_bands)
    except ValueError as error:
        raise UserError(f"--semantic_vector_bits/--semantic_vector_bands: {error}") from None
    if not options.embeddings or threshold <= 0:
        return None
    try:
        return SemanticConfig(
            threshold=threshold, canonical_policy=options.canonical_policy, vectors=vectors
        )
    except ValueError as error:
        raise UserError(f"--semantic_threshold: {error}") from None


def taxonomy(options: DigestflowOptions) -> Taxonomy | None:
    """The topics to tag with, or None with ``--no_embeddings``. Files named on the command
    line are checked either way: a broken one is a mistake even where it would be unused."""
    try:
        topics = load_taxonomy(options.taxonomy)
    except (ValueError, OSError) as error:
        raise UserError(f"taxonomy: {error}") from None
    if options.tag_examples:
        try:
            topics = load_tag_examples(options.tag_examples, topics)
        except (ValueError, OSError) as error:
            raise UserError(f"--tag_examples: {error}") from None
    if not options.embeddings:
        return None
    if not options.tag_examples and options.tag_head == "packaged":
        config = embed_config(options)
        if config is not None and packaged_head_applies(topics, config):
            topics = dataclasses.replace(topics, packaged_head=file_sha256(PACKAGED_HEAD))
    return topics
