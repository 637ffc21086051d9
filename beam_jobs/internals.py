"""Every use of Apache Beam's private API, in one place, so a Beam upgrade that changes one
breaks here (and in tests/test_internals.py) and nowhere else.

* :class:`ObservedFnApiRunner`: the in-process FnApiRunner with a hook around each bundle
  (``FnApiRunner._execute_bundle``), for live progress (:mod:`beam_jobs.progress`);
* :func:`in_flight_monitoring_infos`: the counters of a bundle still running, asked with the
  Fn API's ``ProcessBundleProgressRequest`` (what Beam's own ``ProgressRequester`` sends);
* :func:`bundle_counters`: a bundle's monitoring infos as metric results (``FnApiMetrics``);
* :func:`counting_shuffle_bytes`: the encoded bytes each GroupByKey of the FnApiRunner
  receives (``GroupingBuffer.append``, keyed by the buffer ``BundleContextManager.get_buffer``
  made for it), for the benchmark's shuffle-bytes-per-record figure;
* :func:`parse_known_flags`: every flag every ``PipelineOptions`` class knows, with Beam's
  own argument parser (``_BeamArgumentParser``), to refuse unknown options (Beam only logs
  and drops them).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiMetrics, FnApiRunner


class BundleObserver(Protocol):
    def bundle_started(self, transform_names: list[str], stage_name: str, handlers: list) -> None:
        """A bundle of the fused stage of ``transform_names`` starts on ``handlers``."""

    def bundle_finished(self, seconds: float, monitoring_infos: Iterable[Any]) -> None:
        """It finished after ``seconds``; ``monitoring_infos`` hold its counters."""


class ObservedFnApiRunner(FnApiRunner):
    """The stock FnApiRunner, telling a :class:`BundleObserver` about each bundle.

    Nothing here may fail a run: observer errors are the observer's to swallow."""

    def __init__(self, observer: BundleObserver) -> None:
        super().__init__()
        self._observer = observer

    def _execute_bundle(self, runner_execution_context, bundle_context_manager, bundle_input):
        stage = bundle_context_manager.stage
        try:
            handlers = list(bundle_context_manager.worker_handlers)
        except Exception:  # noqa: BLE001 - progress must never fail a run
            handlers = []
        self._observer.bundle_started(
            [t.unique_name for t in stage.transforms], stage.name, handlers
        )
        started = time.monotonic()
        result = super()._execute_bundle(
            runner_execution_context, bundle_context_manager, bundle_input
        )
        self._observer.bundle_finished(
            time.monotonic() - started, result.process_bundle.monitoring_infos
        )
        return result


def bundle_counters(monitoring_infos: Iterable[Any]) -> list[Any]:
    """The counter results (``MetricResult``) in a bundle's monitoring infos."""
    infos = list(monitoring_infos)
    if not infos:
        return []
    return FnApiMetrics({"bundle": infos}).query(MetricsFilter())["counters"]


def in_flight_monitoring_infos(handlers: list) -> list[Any]:
    """Monitoring infos of the bundles running right now on in-process SDK workers; ``[]``
    when the worker is not in-process."""
    infos: list[Any] = []
    for handler in handlers:
        cache = getattr(getattr(handler, "worker", None), "bundle_processor_cache", None)
        active = getattr(cache, "active_bundle_processors", None)
        for instruction_id in list(active or {}):
            request = beam_fn_api_pb2.InstructionRequest(
                process_bundle_progress=beam_fn_api_pb2.ProcessBundleProgressRequest(
                    instruction_id=instruction_id
                )
            )
            response = handler.push(request).get()
            if not response.error:
                infos.extend(response.process_bundle_progress.monitoring_infos)
    return infos


@contextlib.contextmanager
def counting_shuffle_bytes() -> Iterator[dict[str, int]]:
    """While open, count the bytes every shuffle of an FnApiRunner in this process receives.

    Yields a dict filled as the pipeline runs: GroupByKey transform label -> bytes (encoded
    windowed key-values as the runner's grouping buffers receive them from the SDK workers, the
    local counterpart of what Dataflow's shuffle is sent). A combiner lifted before its shuffle
    counts its partial results, as on Dataflow. Not thread-safe against a second pipeline
    running in the same process at the same time.
    """
    totals: dict[str, int] = collections.defaultdict(int)
    names: dict[int, str] = {}
    get_buffer = execution.BundleContextManager.get_buffer
    append = execution.GroupingBuffer.append

    def named_get_buffer(self, buffer_id, transform_id):
        buffer = get_buffer(self, buffer_id, transform_id)
        kind, name = execution.split_buffer_id(buffer_id)
        if kind == "group":
            names[id(buffer)] = _transform_label(name)
        return buffer

    def counted_append(self, elements_data: bytes) -> None:
        totals[names.get(id(self), "?")] += len(elements_data)
        append(self, elements_data)

    execution.BundleContextManager.get_buffer = named_get_buffer
    execution.GroupingBuffer.append = counted_append
    try:
        yield totals
    finally:
        execution.BundleContextManager.get_buffer = get_buffer
        execution.GroupingBuffer.append = append


def _transform_label(name: str) -> str:
    """A transform's label from the id the runner gives it (``ref_AppliedPTransform_A-B_42`` is
    ``A/B``; names without that form are labels already)."""
    prefix = "ref_AppliedPTransform_"
    if not name.startswith(prefix):
        return name
    label, _, number = name[len(prefix) :].rpartition("_")
    return (label if number.isdigit() else name[len(prefix) :]).replace("-", "/")


def parse_known_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments no ``PipelineOptions`` class knows, every known option string).

    A value a known option cannot take raises ``argparse.ArgumentError`` instead of Beam's
    default of printing the full usage of every runner's options and exiting.
    """
    parser = _BeamArgumentParser(allow_abbrev=False, exit_on_error=False)
    seen: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - the documented extension point
    _, unknown = parser.parse_known_args(argv)
    known = [opt for action in parser._actions for opt in action.option_strings]  # noqa: SLF001
    return unknown, known
