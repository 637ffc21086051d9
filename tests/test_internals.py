"""The private Beam API that beam_jobs/internals.py relies on is still there (a Beam upgrade
that changes it fails here first)."""

from __future__ import annotations

import inspect

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from beam_jobs.internals import counting_shuffle_bytes, parse_known_flags
from beam_jobs.options import DigestflowOptions


def test_the_runner_hook_is_still_there() -> None:
    """ObservedFnApiRunner overrides FnApiRunner._execute_bundle."""
    parameters = list(inspect.signature(FnApiRunner._execute_bundle).parameters)  # noqa: SLF001
    assert parameters == [
        "self",
        "runner_execution_context",
        "bundle_context_manager",
        "bundle_input",
    ]


def test_known_flags_are_every_options_class_flags() -> None:
    assert DigestflowOptions  # imported: its flags are known once its class exists
    unknown, known = parse_known_flags(["--runner=FnApiRunner", "--outptu", "x", "stray"])
    assert unknown == ["--outptu", "x", "stray"]
    assert "--runner" in known and "--input" in known and "--no_embeddings" in known


def test_shuffle_bytes_are_counted_per_group_by_key_and_the_runner_is_restored() -> None:
    from apache_beam.runners.portability.fn_api_runner import execution

    append = execution.GroupingBuffer.append
    values = [(f"key{i % 7}", "x" * 100) for i in range(500)]
    with counting_shuffle_bytes() as shuffled, beam.Pipeline(runner=FnApiRunner()) as pipeline:
        (
            pipeline
            | beam.Create(values)
            | "GroupWords" >> beam.GroupByKey()
            | "Sizes" >> beam.MapTuple(lambda key, texts: (key, len(list(texts))))
            | "GroupAgain" >> beam.GroupByKey()
        )
    assert execution.GroupingBuffer.append is append
    assert {"GroupWords", "GroupAgain"} <= set(shuffled)  # (Create may reshuffle too)
    # Every value's 100 characters crossed the first shuffle; the second carries small counts.
    assert shuffled["GroupWords"] >= 500 * 100
    assert 0 < shuffled["GroupAgain"] < shuffled["GroupWords"] / 50
