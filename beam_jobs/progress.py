"""Progress while a digestflow job runs, and the summary after it (on stderr).

What is shown depends on the runner, because Beam gives no common way to watch a job:

* **FnApiRunner** (the default, in-process). ``pipeline.run()`` blocks until the job is done
  and only then returns a result with metrics, so polling ``result.metrics()`` cannot work.
  Instead the runner is replaced by :class:`beam_jobs.internals.ObservedFnApiRunner`, a subclass that, after each
  bundle, adds the bundle's user counters to running totals and books the bundle's wall time
  under the steps it ran (a fused stage, e.g. ``ReadDigests+ParseDigests+ClusterDuplicates``).
  Local runs often process a stage in one bundle, so while a bundle runs its *in-flight*
  counters are also read, with the same Fn API ``ProcessBundleProgressRequest`` Beam's own
  ``ProgressRequester`` sends, when the SDK worker is in-process. Shown: files, records
  parsed, dead letters, rows clustered, texts embedded (the model's own counter: paper texts
  plus the taxonomy's prototype texts), their rates, the running stage, and stage timings.
  A counter of signed texts is shown when the pipeline has one (``texts_signed``).
* **Runners whose** ``run()`` **returns while the job is running** (DataflowRunner, Prism):
  ``result.metrics()`` is polled every ``REMOTE_INTERVAL`` seconds until the job ends (on
  Dataflow these are the service's attempted counters, which lag by tens of seconds). No
  stage timings: the Dataflow UI has them.
* **Other blocking runners** (``--runner=DirectRunner``, which builds its own FnApiRunner):
  the final summary only.

On a terminal the status line is rewritten in place every ``TTY_INTERVAL`` seconds; otherwise
a plain line is written every ``LOG_INTERVAL`` seconds when something changed. ``--quiet``
silences both and the final summary. Nothing here can fail a run: a progress problem is
logged and the job goes on.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.runner import PipelineState

from beam_jobs.internals import (
    ObservedFnApiRunner,
    bundle_counters,
    in_flight_monitoring_infos,
)
from beam_jobs.options import DigestflowOptions
from transforms.metrics import NAMESPACE

TTY_INTERVAL = 2.0
LOG_INTERVAL = 10.0
REMOTE_INTERVAL = 15.0
_LOG = logging.getLogger(__name__)

# (label, counter key) in pipeline order; keys as in run_summary.json's "counters".
PROGRESS_COUNTERS: tuple[tuple[str, str], ...] = (
    ("files", "files_matched"),
    ("parsed", "records_parsed"),
    ("dead letters", "dead_letters"),
    ("signed", "texts_signed"),
    ("clustered", "rows_clustered"),
    ("embedded", "digestflow_embed.embedded_texts"),
)
RATE_COUNTERS = frozenset({"records_parsed", "texts_signed", "digestflow_embed.embedded_texts"})


# ---- pure helpers -------------------------------------------------------------------------


def counter_key(namespace: str, name: str) -> str:
    """The summary's naming: our namespace bare, others as ``namespace.name``."""
    return name if namespace == NAMESPACE else f"{namespace}.{name}"


def counter_values(counters: Iterable[Any]) -> dict[str, int]:
    """``{key: value}`` from ``MetricResults.query()["counters"]`` (committed if known)."""
    values: dict[str, int] = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        key = counter_key(counter.key.metric.namespace, counter.key.metric.name)
        values[key] = values.get(key, 0) + int(value or 0)
    return values


def add_counts(*parts: Mapping[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


def stage_label(transform_names: Iterable[str], fallback: str) -> str:
    """The top-level steps a fused stage runs, in order: ``ParseDigests+ClusterDuplicates``.
    Runner-internal names (``ref_...``) are dropped."""
    steps: list[str] = []
    for name in transform_names:
        top = name.split("/", 1)[0]
        if top and not top.startswith("ref_") and top not in steps:
            steps.append(top)
    return "+".join(steps) or fallback


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


class Rates:
    """Throughput of each counter while it moves: (last value - first value seen) / (time of
    its last change - time first seen). A counter that jumped in one step has no rate yet,
    and a finished stage keeps the rate it had instead of decaying with the wall clock."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, float]] = {}
        self._last: dict[str, tuple[int, float]] = {}

    def update(self, values: Mapping[str, int], now: float) -> dict[str, float]:
        for key, value in values.items():
            if key not in self._first:
                self._first[key] = self._last[key] = (value, now)
            elif value != self._last[key][0]:
                self._last[key] = (value, now)
        rates = {}
        for key, (first, since) in self._first.items():
            last, at = self._last[key]
            if at > since and last > first:
                rates[key] = (last - first) / (at - since)
        return rates


def format_progress(
    values: Mapping[str, int],
    elapsed: float,
    stage: str | None = None,
    stage_elapsed: float = 0,
    rates: Mapping[str, float] | None = None,
) -> str:
    """One status line: counters seen so far (with their rates), and the running stage."""
    parts = []
    for label, key in PROGRESS_COUNTERS:
        if key not in values:
            continue
        part = f"{label} {values[key]:,}"
        if key in RATE_COUNTERS and (rates or {}).get(key):
            part += f" ({rates[key]:,.0f}/s)"
        parts.append(part)
    text = f"[{_seconds(elapsed)}] " + (" · ".join(parts) if parts else "starting")
    if stage:
        text += f" · running {stage} ({_seconds(stage_elapsed)})"
    return text


def format_summary(summary: Mapping[str, Any], stages: Mapping[str, tuple[float, int]]) -> str:
    """The end-of-run block: counts, dead letters by reason, stage timings, where the output is."""
    lines = [f"digestflow: done in {_seconds(float(summary.get('wall_seconds', 0)))}"]
    counts = [
        ("files", "files_matched"),
        ("records", "records_parsed"),
        ("rows written", "rows_written"),
        ("papers (clusters)", "clusters"),
        ("embedded texts", "embedded_texts"),
        ("dead letters", "dead_lettered"),
    ]
    shown = [(label, key) for label, key in counts if key in summary]
    shown = [(label, key) for label, key in shown if summary[key] or key != "embedded_texts"]
    lines.append("  " + " · ".join(f"{label} {summary[key]:,}" for label, key in shown))
    reasons = summary.get("dead_letters_by_reason") or {}
    if reasons:
        by_reason = ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))
        lines.append(f"  dead letters by reason: {by_reason}")
    if summary.get("embedding_failures"):
        lines.append(f"  embedding failures: {summary['embedding_failures']:,} (NULL vectors)")
    if summary.get("every_record_written_once") is False:
        lines.append("  WARNING: records parsed != rows written (see run_summary.json)")
    if stages:
        width = max(len(name) for name in stages)
        lines.append("  stage timings (fused stages, wall time of their bundles):")
        lines += [
            f"    {name.ljust(width)}  {_seconds(seconds):>7}  ({bundles} bundle{'s' * (bundles != 1)})"
            for name, (seconds, bundles) in stages.items()
        ]
    else:
        lines.append("  stage timings: not measured on this runner")
    output = summary.get("output", "")
    lines.append(f"  output: {output}  (digestflow report {output} overview)")
    return "\n".join(lines)


# ---- the FnApiRunner with progress --------------------------------------------------------


class Tally:
    """Counters of finished bundles, the running bundle, and time per stage (thread-safe):
    the :class:`beam_jobs.internals.BundleObserver` of the in-process runner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: dict[str, int] = {}
        self.stages: dict[str, tuple[float, int]] = {}
        self.running: tuple[str, float, list] | None = None  # (label, started, worker handlers)

    def bundle_started(self, transform_names: list[str], stage_name: str, handlers: list) -> None:
        label = stage_label(transform_names, stage_name)
        with self._lock:
            self.running = (label, time.monotonic(), handlers)

    def bundle_finished(self, seconds: float, monitoring_infos: Iterable[Any]) -> None:
        try:
            counts = monitoring_counts(monitoring_infos)
        except Exception:  # noqa: BLE001 - progress must never fail a run
            counts = {}
        with self._lock:
            label = self.running[0] if self.running is not None else "?"
            self.done = add_counts(self.done, counts)
            spent, bundles = self.stages.get(label, (0.0, 0))
            self.stages[label] = (spent + seconds, bundles + 1)
            self.running = None

    def snapshot(self) -> tuple[dict[str, int], tuple[str, float, list] | None]:
        with self._lock:
            return dict(self.done), self.running


def monitoring_counts(monitoring_infos: Iterable[Any]) -> dict[str, int]:
    """User counters in a bundle's monitoring infos (a ProcessBundle(Progress)Response)."""
    return counter_values(bundle_counters(monitoring_infos))


def in_flight_counts(handlers: list) -> dict[str, int]:
    """Counters of the bundles running right now on in-process SDK workers."""
    return monitoring_counts(in_flight_monitoring_infos(handlers))


# ---- the reporter -------------------------------------------------------------------------


class Reporter:
    """Prints progress while the job runs and the summary after it; see the module docstring."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.tally = Tally()
        self._measured = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_line = ""
        self._rates = Rates()

    @classmethod
    def for_options(cls, options: PipelineOptions, executes: bool = True) -> Reporter:
        """Quiet when asked, and when nothing executes (a dry run or a template)."""
        return cls(quiet=options.view_as(DigestflowOptions).quiet or not executes)

    # -- running

    def run(self, pipeline) -> Any:
        """``pipeline.run()``, with live progress on the FnApiRunner."""
        self._started = time.monotonic()
        if self.quiet or type(pipeline.runner) is not FnApiRunner:
            return self._watch_async(pipeline.run())
        pipeline.runner = ObservedFnApiRunner(self.tally)
        self._measured = True
        self._start(self._local_values, TTY_INTERVAL if self.tty else LOG_INTERVAL)
        try:
            return pipeline.run()
        finally:
            self._halt()

    def _watch_async(self, result: Any) -> Any:
        """Poll ``result.metrics()`` while a remote job runs (nothing to do once it is done)."""
        if not self.quiet and _state(result) not in _TERMINAL:
            interval = max(REMOTE_INTERVAL, TTY_INTERVAL if self.tty else LOG_INTERVAL)

            def values() -> tuple[dict[str, int], str | None, float]:
                if _state(result) in _TERMINAL:
                    self._stop.set()
                return counter_values(result.metrics().query(MetricsFilter())["counters"]), None, 0

            self._start(values, interval)
        return result

    def _local_values(self) -> tuple[dict[str, int], str | None, float]:
        done, running = self.tally.snapshot()
        if running is None:
            return done, None, 0.0
        label, started, handlers = running
        try:
            live = in_flight_counts(handlers)
        except Exception:  # noqa: BLE001 - in-flight counters are best effort
            live = {}
        return add_counts(done, live), label, time.monotonic() - started

    def _start(self, values: Callable[[], tuple[dict, str | None, float]], interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self._emit(*values())
                except Exception as error:  # noqa: BLE001 - never fail the run
                    _LOG.debug("progress: %s", error)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="digestflow-progress", daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REMOTE_INTERVAL)
            self._thread = None
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""

    def _emit(self, values: Mapping[str, int], stage: str | None, stage_elapsed: float) -> None:
        now = time.monotonic()
        rates = self._rates.update(values, now)
        line = format_progress(values, now - self._started, stage, stage_elapsed, rates)
        if self.tty:  # one row, rewritten in place: a wrapped line could not be cleared
            width = shutil.get_terminal_size().columns - 1
            self.stream.write(
                "\r\x1b[2K" + (line if len(line) <= width else line[: width - 1] + "…")
            )
        else:
            unchanged = line.split("] ", 1)[-1] == self._last_line.split("] ", 1)[-1]
            if unchanged and stage is None:
                return
            self.stream.write(f"digestflow: progress {line}\n")
        self.stream.flush()
        self._last_line = line

    # -- after the run

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Stop watching and print the summary (counts, dead letters, timings, output)."""
        self._halt()
        if self.quiet:
            return
        stages = self.tally.stages if self._measured else {}
        self.stream.write(format_summary(summary, stages) + "\n")
        self.stream.flush()


_TERMINAL = frozenset(
    {
        PipelineState.DONE,
        PipelineState.FAILED,
        PipelineState.CANCELLED,
        PipelineState.UPDATED,
        PipelineState.DRAINED,
    }
)


def _state(result: Any) -> Any:
    try:
        return result.state
    except Exception:  # noqa: BLE001 - an unknown state is treated as still running
        return None
