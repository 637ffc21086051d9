"""The real pipeline translated for Dataflow, offline.

``DataflowRunner`` with ``--dry_run=True --no_auth`` runs every step of a submission except
the API call: option validation, the runner's overrides, the portable pipeline proto with
every DoFn pickled, the worker environment. Bucket and project names must be *valid* (Beam
validates them): with no valid gs:// temp/staging location Beam would try to create a default
bucket online and hang for minutes, which :func:`beam_jobs.launcher.check_offline_locations`
now refuses up front. Every subprocess here has a timeout as a safety net.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.io.gcp import gcsio
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    WorkerOptions,
)
from apache_beam.pipeline import PipelineVisitor
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

from beam_jobs import launcher
from beam_jobs.errors import UserError
from beam_jobs.options import DigestflowOptions
from transforms.dedup.clusters import CANONICAL_POLICIES
from transforms.enrich.encoders import CLI_BACKENDS

ROOT = Path(__file__).resolve().parents[2]
METADATA = ROOT / "deploy" / "metadata.json"
IMAGE = "example/digestflow:test"
BUCKET = "gs://digestflow-test"  # a bucket name needs >= 3 characters, a project id 6-30
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=digestflow-test",
    "--region=us-central1",
    f"--temp_location={BUCKET}/tmp",
    f"--staging_location={BUCKET}/staging",
    "--no_auth",
    "--dry_run=True",
    f"--sdk_container_image={IMAGE}",
    "--sdk_location=container",
]
IO = [f"--input={BUCKET}/in/*.txt", f"--output={BUCKET}/out"]
PICKLED_DOFN = "beam:dofn:pickled_python_info:v1"

TOP_LEVEL = [
    "ReadDigests",
    "ParseDigests",
    "ClusterDuplicates",
    "WriteRecords",
    "WriteClusters",
    "WriteDeadLetters",
]
NEAR_DUPLICATES = "ClusterDuplicates/NearDuplicateGroups"
INSIDE_CLUSTERING = [
    NEAR_DUPLICATES,
    f"{NEAR_DUPLICATES}/SignTexts",
    f"{NEAR_DUPLICATES}/LshCandidatePairs",
    f"{NEAR_DUPLICATES}/VerifiedSimilarPairs",
    f"{NEAR_DUPLICATES}/ConnectedComponents",
]


@dataclass
class Translated:
    """What DataflowRunner produced for one dry run of ``beam_jobs.launcher.run``."""

    pipeline: beam.Pipeline
    runner: DataflowRunner
    result: Any
    proto: beam_runner_api_pb2.Pipeline
    seconds: float

    def transforms_by_name(self) -> dict[str, beam_runner_api_pb2.PTransform]:
        return {t.unique_name: t for t in self.proto.components.transforms.values()}

    def pardo_payloads(self) -> dict[str, bytes]:
        """unique name -> the pickled DoFn exactly as it would be shipped to the workers."""
        payloads = {}
        for transform in self.proto.components.transforms.values():
            if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
                continue
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            if pardo.do_fn.urn == PICKLED_DOFN:
                payloads[transform.unique_name] = pardo.do_fn.payload
        return payloads

    def combine_payloads(self) -> dict[str, bytes]:
        payloads = {}
        for transform in self.proto.components.transforms.values():
            if transform.spec.urn == common_urns.composites.COMBINE_PER_KEY.urn:
                combine = beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload)
                payloads[transform.unique_name] = combine.combine_fn.payload
        return payloads


def _no_gcs(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("a dry run must not create a GCS client")


@pytest.fixture(scope="module")
def translated() -> Translated:
    """``beam_jobs.launcher.run`` as the CLI calls it, with the runner's output captured.

    No GCS client may be created on the way (it would try to authenticate and go online).
    """
    captured: dict[str, Any] = {}
    original = DataflowRunner.run_pipeline

    def capture(self, pipeline, options, pipeline_proto=None):
        result = original(self, pipeline, options, pipeline_proto)
        captured.update(runner=self, pipeline=pipeline, result=result)
        return result

    started = time.monotonic()
    with (
        mock.patch.object(DataflowRunner, "run_pipeline", capture),
        mock.patch.object(gcsio.GcsIO, "__init__", _no_gcs),
    ):
        assert launcher.run([*DATAFLOW, *IO]) is None
    seconds = time.monotonic() - started
    runner = captured["runner"]
    return Translated(
        captured["pipeline"], runner, captured["result"], runner.proto_pipeline, seconds
    )


def test_dry_run_translates_offline_and_fast(translated: Translated) -> None:
    assert translated.result.job is translated.runner.job
    assert translated.runner.job.proto_pipeline is not None
    assert translated.seconds < 60


def test_job_has_the_expected_composites(translated: Translated) -> None:
    by_name = translated.transforms_by_name()
    missing = [name for name in TOP_LEVEL + INSIDE_CLUSTERING if name not in by_name]
    assert not missing, f"composites missing from the Dataflow job: {missing}"
    # The top-level composites hang directly off the root, each with its inner steps.
    roots = [translated.proto.components.transforms[i] for i in translated.proto.root_transform_ids]
    top = {
        translated.proto.components.transforms[child].unique_name
        for root in roots
        for child in root.subtransforms
    } | {root.unique_name for root in roots}
    assert set(TOP_LEVEL) <= top
    for name in TOP_LEVEL + INSIDE_CLUSTERING:
        assert by_name[name].subtransforms, f"{name} has no inner transforms"
    near = {
        translated.proto.components.transforms[i].unique_name
        for i in by_name[NEAR_DUPLICATES].subtransforms
    }
    assert set(INSIDE_CLUSTERING[1:]) <= near


def test_every_dofn_and_combinefn_unpickles(translated: Translated) -> None:
    """What the workers receive: each ParDo's pickled DoFn (and each CombineFn) loads back."""
    payloads = translated.pardo_payloads()
    assert len(payloads) > 50
    for name, payload in payloads.items():
        fn = pickler.loads(payload)[0]
        assert isinstance(fn, beam.DoFn), name
        assert type(pickler.loads(pickler.dumps(fn))) is type(fn), name
    for name, payload in translated.combine_payloads().items():
        assert isinstance(pickler.loads(payload), beam.CombineFn), name


def test_every_pardo_of_the_built_graph_round_trips(translated: Translated) -> None:
    """The Python-side graph too: every ParDo's fn survives pickler.dumps/loads."""
    fns: dict[str, Any] = {}

    class CollectParDos(PipelineVisitor):
        def visit_transform(self, applied) -> None:
            if isinstance(applied.transform, beam.ParDo):
                fns[applied.full_label] = applied.transform.fn

    translated.pipeline.visit(CollectParDos())
    assert len(fns) > 50
    for label, fn in fns.items():
        assert type(pickler.loads(pickler.dumps(fn))) is type(fn), label


def test_pickled_dofns_load_in_a_fresh_interpreter(translated: Translated, tmp_path: Path) -> None:
    """A worker has none of this process's state: unpickle every payload in a new Python."""
    blobs = tmp_path / "payloads.pickle"
    payloads = {**translated.pardo_payloads(), **translated.combine_payloads()}
    blobs.write_bytes(pickle.dumps(payloads))
    script = (
        "import pickle, sys\n"
        "from apache_beam.internal import pickler\n"
        "payloads = pickle.load(open(sys.argv[1], 'rb'))\n"
        "for name, payload in payloads.items():\n"
        "    pickler.loads(payload)\n"
        "print(len(payloads))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(blobs)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) == len(payloads)


def test_workers_run_the_given_container_image(translated: Translated) -> None:
    environments = translated.proto.components.environments
    assert environments
    for env_id, env in environments.items():
        assert env.urn == common_urns.environments.DOCKER.urn, env_id
        payload = beam_runner_api_pb2.DockerPayload.FromString(env.payload)
        assert payload.container_image == IMAGE, env_id
    pardo_envs = {
        t.environment_id
        for t in translated.proto.components.transforms.values()
        if t.spec.urn == common_urns.primitives.PAR_DO.urn
    }
    assert pardo_envs <= set(environments)
    options = translated.runner.job.options
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert options.view_as(SetupOptions).sdk_location == "container"


def test_cli_dry_run_returns_promptly() -> None:
    args = [
        "run",
        "--input",
        f"{BUCKET}/in/*.txt",
        "--output",
        f"{BUCKET}/out",
        *DATAFLOW,
    ]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pipeline translated" in done.stdout
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 90


def test_dry_run_without_a_valid_bucket_fails_fast_instead_of_going_online() -> None:
    # "b" is not a valid bucket name: Beam would try to create a default bucket online.
    argv = [
        *(a for a in DATAFLOW if "_location=" not in a),
        "--temp_location=gs://b/tmp",
        "--staging_location=gs://b/staging",
        *IO,
    ]
    with pytest.raises(UserError, match="valid bucket name"):
        launcher.check_offline_locations(launcher.pipeline_options(argv))
    one_valid = [*argv, f"--temp_location={BUCKET}/tmp"]
    launcher.check_offline_locations(launcher.pipeline_options(one_valid))


def test_translation_only_runs_return_before_touching_output() -> None:
    """Dry runs and template creation (how the Flex launcher builds the job) finish right
    after pipeline.run(): no waiting, no finalize_tables on gs://, no summary."""
    translate_only = launcher.translate_only
    assert translate_only(PipelineOptions(["--dry_run=True"]))
    assert translate_only(PipelineOptions([f"--template_location={BUCKET}/t/job.json"]))
    assert not translate_only(PipelineOptions(["--runner=DataflowRunner"]))


def test_remote_paths_are_never_checked_before_submission() -> None:
    """A dry run (or a template) must stay offline: nothing of a gs:// input or output is
    looked at. (A real run reads the output's manifest to pick the next version.)"""

    def no_storage(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("storage touched before submission")

    fs = launcher.FileSystems
    with (
        mock.patch.object(fs, "match", no_storage),
        mock.patch.object(fs, "exists", no_storage),
        mock.patch.object(fs, "mkdirs", no_storage),
        mock.patch.object(fs, "create", no_storage),
    ):
        launcher.check_inputs([f"{BUCKET}/in/*.txt", f"{BUCKET}/more/*.gz"])
        target = launcher.plan_target(launcher.prepare([*IO, "--dry_run=True"]))
        assert target.root.endswith("/v000001")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_an_update_translates_for_dataflow_offline_and_leaves_the_output_untouched(
    tmp_path: Path,
) -> None:
    """``run --incremental`` as a Dataflow dry run: it plans against the existing (local)
    output, as an update does, translates the job that reads the part back, and writes
    nothing into the output (the plan goes to a scratch directory, removed afterwards)."""
    from beam_jobs.synthetic.generator import GeneratorConfig, generate

    dumps = tmp_path / "dumps"
    generate(dumps, GeneratorConfig(records=240, seed=8, records_per_file=80))
    days = sorted(dumps.glob("*.txt"))
    output = tmp_path / "out"
    flags = ["--no_embeddings", "--quiet"]
    launcher.run([f"--input={days[0]}", f"--output={output}", *flags])
    before = _tree(output)
    captured: dict[str, Any] = {}
    original = DataflowRunner.run_pipeline

    def capture(self, pipeline, options, pipeline_proto=None):
        captured["runner"] = self
        return original(self, pipeline, options, pipeline_proto)

    argv = [*DATAFLOW, f"--input={days[1]}", f"--output={output}", *flags, "--incremental"]
    with (
        mock.patch.object(DataflowRunner, "run_pipeline", capture),
        mock.patch.object(gcsio.GcsIO, "__init__", _no_gcs),
    ):
        assert launcher.run(argv) is None
    names = {
        t.unique_name for t in captured["runner"].proto_pipeline.components.transforms.values()
    }
    assert {"ReadPreviousVersion", "SkipJoinedCopies", "ClusterDuplicates"} <= {
        n.split("/")[0] for n in names
    }
    assert _tree(output) == before, "a dry run wrote into the output"
    assert not list(Path(tempfile.gettempdir()).glob("digestflow-dry-run-*"))
    # a template cannot hold an update: it plans from the output when it is launched
    template = [a for a in argv if not a.startswith("--dry_run")]
    template.append(f"--template_location={BUCKET}/templates/job.json")
    with pytest.raises(UserError, match="cannot be baked into a template"):
        launcher.run(template)


# ------------------------------------------------------------------ deploy/metadata.json


def _metadata() -> dict[str, Any]:
    return json.loads(METADATA.read_text())


def test_template_parameters_are_known_options_with_anchored_regexes() -> None:
    parameters = _metadata()["parameters"]
    known = PipelineOptions([]).get_all_options()
    names = [p["name"] for p in parameters]
    assert {"input", "output", "threshold", "canonical_policy"} <= set(names)
    assert len(names) == len(set(names))
    for parameter in parameters:
        assert parameter["name"] in known, parameter["name"]
        assert parameter["regexes"], parameter["name"]
        for regex in parameter["regexes"]:
            assert regex.startswith("^") and regex.endswith("$"), regex
            re.compile(regex)
    required = [p["name"] for p in parameters if not p.get("isOptional")]
    assert sorted(required) == ["input", "output"]


VALID = {
    "input": ["gs://my-bucket/dumps/*.txt*", "gs://a.b-c_d/x/digest_2024-03-01.txt.gz"],
    "output": ["gs://my-bucket/corpus/run-1"],
    "threshold": ["0.8", ".85", "1", "1.0", "0.05"],
    "canonical_policy": sorted(CANONICAL_POLICIES),
    "num_perm": ["128", "256"],
    "shingle": ["word", "char"],
    "digest_year": ["2024"],
    "output_shards": ["4"],
    "lsh_shards": ["256", "4096"],
    "semantic_threshold": ["0.82", "off", "0", "1"],
    "max_seq_length": ["256"],
    "embedding_backend": list(CLI_BACKENDS),  # every command-line choice, int8 included
    "tag_head": ["packaged", "none"],
    "sdk_container_image": [
        "us-central1-docker.pkg.dev/p/digestflow/digestflow:abc1234",
        "gcr.io/p/digestflow@sha256:" + "a" * 64,
    ],
}
INVALID = {
    "input": ["/local/dumps/*.txt", "gs://my-bucket", "s3://b/x", "gs://B/x"],
    "output": ["out/run-1", "gs://my-bucket"],
    "threshold": ["0", "0.0", "1.5", "-0.8", "abc", ""],
    "canonical_policy": ["first", "Earliest", ""],
    "num_perm": ["0", "-1", "12.5"],
    "shingle": ["words", ""],
    "digest_year": ["24", "3024"],
    "output_shards": ["0"],
    "lsh_shards": ["0", "-1", "x"],
    "semantic_threshold": ["1.5", "-0.5", "on", ""],
    "max_seq_length": ["0", "x"],
    "embedding_backend": ["onnx-int8", "Torch", ""],
    "tag_head": ["Packaged", "off", ""],
    "sdk_container_image": ["", "digestflow image"],
}


def test_template_regexes_accept_valid_and_reject_invalid_values() -> None:
    regexes = {p["name"]: p["regexes"] for p in _metadata()["parameters"]}
    assert set(regexes) == set(VALID) == set(INVALID)
    for name, patterns in regexes.items():
        for value in VALID[name]:
            assert all(re.fullmatch(r, value) for r in patterns), (name, value)
        for value in INVALID[name]:
            assert not all(re.fullmatch(r, value) for r in patterns), (name, value)


def test_template_defaults_pass_their_own_regexes() -> None:
    """Each parameter's regex accepts the option's own default (the template stays usable
    with the values the CLI uses)."""
    defaults = DigestflowOptions([]).get_all_options()
    for parameter in _metadata()["parameters"]:
        default = defaults.get(parameter["name"])
        if default is None or isinstance(default, bool):
            continue
        value = str(default)
        assert all(re.fullmatch(r, value) for r in parameter["regexes"]), (parameter, value)
