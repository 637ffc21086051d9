"""What a run did, from its counters: the run summary (``run_summary.json``), and the check
that every record was written exactly once before a version is published."""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from beam_jobs import progress
from beam_jobs.store.versions import SUMMARY_FILE


class IncompleteRun(RuntimeError):
    """The counters do not add up: the version is not published."""


def counters(result: Any) -> dict[str, int]:
    """Counters of our namespaces, committed values where the runner has them."""
    return progress.counter_values(result.metrics().query(MetricsFilter())["counters"])


def summarize(
    found: dict[str, int], output: str, seconds: float, unchanged: dict[str, int] | None = None
) -> dict[str, Any]:
    """The run summary. ``unchanged``: an update's rows carried as they were (records,
    clusters: listed in the earlier files that hold them) and its joined copies."""
    dead_by_reason = {
        key.split(".", 1)[1]: value
        for key, value in sorted(found.items())
        if key.startswith("dead_letters.")
    }
    parsed = found.get("records_parsed", 0)
    kept_records = (unchanged or {}).get("records", 0)
    # from the previous version (--incremental): clustered again, or kept as they were
    reclustered = found.get("records_reclustered", 0)
    carried = reclustered + kept_records
    joined = (unchanged or {}).get("joined_copies", 0)  # rows of copies joined by the plan
    # counted on the way into the records writer, plus the rows written beside it and the
    # rows kept in earlier files
    written = found.get("rows_written", 0) + kept_records + joined
    return {
        "output": output,
        "files_matched": found.get("files_matched", 0),
        "records_parsed": parsed,
        "records_carried": carried,
        "records_reclustered": reclustered,
        "records_unchanged": kept_records,
        "records_joined_known": joined,
        "rows_written": written,
        "dead_lettered": found.get("dead_letters", 0),
        "dead_letters_by_reason": dead_by_reason,
        # clusters found lexically, less those a semantic merge absorbed into another, plus
        # (an update) the clusters it kept unchanged
        "clusters": found.get("clusters", 0)
        - found.get("semantic.merged_clusters", 0)
        + (unchanged or {}).get("clusters", 0),
        "semantic_merges": found.get("semantic.merged_clusters", 0),
        "embedded_texts": found.get("embedded_texts", 0),
        "embedding_failures": found.get("embedding_failures", 0),
        "embeddings_reused": found.get("embeddings_reused", 0),
        "every_record_written_once": parsed + carried == written,
        "wall_seconds": round(seconds, 2),
        "counters": dict(sorted(found.items())),
    }


def unchanged_summary(output: str, version: int, skipped: int) -> dict[str, Any]:
    """The summary of an update that found nothing new: no version is written."""
    return {
        "output": output,
        "unchanged": True,
        "version": version,
        "files_skipped_already_ingested": skipped,
        "records_parsed": 0,
    }


def write_summary(root: str, summary: dict[str, Any]) -> None:
    with FileSystems.create(FileSystems.join(root, SUMMARY_FILE)) as fh:
        fh.write(json.dumps(summary, indent=2, default=str).encode())


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
        write_summary(root, summary)
        raise IncompleteRun(
            "not published, the output keeps its current version: " + "; ".join(problems)
        )
