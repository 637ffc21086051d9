"""The private Beam API that beam_jobs/internals.py relies on is still there (a Beam upgrade
that changes it fails here first)."""

from __future__ import annotations

import inspect

from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from beam_jobs.internals import parse_known_flags


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
    unknown, known = parse_known_flags(["--runner=FnApiRunner", "--outptu", "x", "stray"])
    assert unknown == ["--outptu", "x", "stray"]
    assert "--runner" in known and "--input" in known and "--no_embeddings" in known
