"""``make bench`` section ``incremental`` (issue #7): the cost of adding one day to a corpus.

Claim under test: adding one day (500 records, 80 % of them papers already seen) to a
50k-record corpus should cost at most 1.2x processing the new records alone, and far less
than a re-run.

**Data.** The generator applies one set of rates to every file, so it cannot produce a
normal corpus (default 15 % exact + 15 % near copies) followed by a day that is 80 % known.
The new day is therefore *constructed* from generated records: one corpus of
``base + EXTRA_DAYS`` days (one dump per day, ``records_per_file`` = the day size) is
generated; the first days are the base; the new day takes, in generation order, re-scrapes
(exact and near copies) of papers first seen in the base days and brand-new papers
(``original`` slots) from the later days, in the requested shares, shuffled, and is written
with the generator's own page writer (same layout rules, header, date) as the next day's
``digest_YYYY-MM-DD.txt``, with its ground truth (the lines are taken as the generator's
reference reader returns them, stripped at both ends). The known share is measured back from the
ground truth (paper_id seen in a base day).

**Runs** (each a fresh child process, like the speed section: ``wall`` timed inside the child
after imports, peak RSS = the child's ``VmHWM``, or that of a process it forked and waited
for if higher: the update's background process), all with ``--no_embeddings``:

a. base build: a full run over the base days;
b. update: ``--incremental`` with the new day, into a copy of (a); run REPEATS times,
   alternating with (c), each time on a fresh copy: the median is reported;
c. the new day alone: a full run over its dump only, into an empty directory (REPEATS times);
d. full re-run over base + new day, into an empty directory (same file paths as (a) + (b),
   since ``record_id`` hashes the path), whose records must equal the update's;
e. re-adding the same day to (b): must change nothing (no new version).

Then, on a small corpus, the same base + update *with* embeddings, to check that the update
embeds only the texts it has never seen (``embedded_texts``) and reuses the rest.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beam_jobs.query import catalog
from beam_jobs.store import commits, versions
from beam_jobs.synthetic import (
    GROUND_TRUTH_NAME,
    GeneratorConfig,
    PageWriter,
    file_name,
    generate,
    is_compact,
    page_date,
    read_ground_truth,
    read_slots,
)
from bench.common import (
    Settings,
    assignment_set,
    corpus_stamp,
    emit,
    log,
    measure_child,
    pipeline_command,
    ratio,
    render_table,
)

DAY_RECORDS = 500
KNOWN_SHARE = 0.8
EXTRA_DAYS = 8  # generated after the base days, to draw the new day's records from
BUILDER_VERSION = 2  # bump when the construction below changes (regenerates cached data)
DUMP_GLOB = "digest_*.txt*"
EMBED_DAY_RECORDS = 200
GOAL = 1.2
REPEATS = 3  # runs of the update and of the new day alone, median reported
# Texts/s the whole pipeline embeds on this 2-core machine (section embeddings: ~15-18), for
# the estimate in the table title of what embedding the base corpus would cost.
PIPELINE_TEXTS_PER_S = 15


# ========================================================================================= data


@dataclass(frozen=True)
class DayData:
    """A base corpus (one dump per day) and one new day's dump, with what the new day holds."""

    base_dir: str
    new_dir: str
    new_file: str
    base_files: int
    base_records: int
    new_records: int
    known_records: int  # new-day records whose paper_id appears in a base day (ground truth)
    known_share: float
    known_variants: dict[str, int]
    seed: int

    @property
    def base_glob(self) -> str:
        return str(Path(self.base_dir).resolve() / DUMP_GLOB)

    @property
    def new_glob(self) -> str:
        return str(Path(self.new_dir).resolve() / DUMP_GLOB)


def day_data(
    directory: Path, base_records: int, day_records: int, seed: int, share: float = KNOWN_SHARE
) -> DayData:
    """The data under ``directory``, built by :func:`build_day_data` unless it is current."""
    base_files = max(1, round(base_records / day_records))
    config = GeneratorConfig(
        records=(base_files + EXTRA_DAYS) * day_records, seed=seed, records_per_file=day_records
    )
    stamp = {**corpus_stamp(config), "share": share, "builder": BUILDER_VERSION}
    stamp_path, info_path = directory / "generator.json", directory / "day_data.json"
    current = stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp
    if current and info_path.exists():
        return DayData(**json.loads(info_path.read_text()))
    if directory.exists():
        shutil.rmtree(directory)
    log(f"incremental: generating {base_files} base days + 1 new day into {directory}")
    data = build_day_data(directory, config, base_files, share)
    info_path.write_text(json.dumps(asdict(data), indent=1))
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return data


def build_day_data(
    directory: Path, config: GeneratorConfig, base_files: int, share: float
) -> DayData:
    scratch, base_dir, new_dir = directory / "generated", directory / "base", directory / "new"
    generate(scratch, config)
    truth = read_ground_truth(scratch)
    base_names = {file_name(config, k) for k in range(base_files)}
    base_dir.mkdir(parents=True)
    for name in sorted(base_names):
        shutil.move(scratch / name, base_dir / name)
    base_truth = [row for row in truth if row["source_file"] in base_names]
    _write_truth(base_dir / GROUND_TRUTH_NAME, base_truth)
    base_papers = {row["paper_id"] for row in base_truth if row["variant"] != "missing_abstract"}

    # Candidates from the later days, in generation order: re-scrapes of base papers (known)
    # and first appearances of new papers (unknown).
    n_known = round(config.records_per_file * share)
    n_new = config.records_per_file - n_known
    known: list[tuple[dict, tuple[str, str]]] = []
    fresh: list[tuple[dict, tuple[str, str]]] = []
    for k in range(base_files, config.files):
        name = file_name(config, k)
        slots = read_slots(scratch / name)
        rows = [row for row in truth if row["source_file"] == name]
        for row, slot in zip(rows, slots, strict=True):
            if slot[1] is None:
                continue
            if row["variant"] == "original":
                fresh.append((row, slot))
            elif row["paper_id"] in base_papers:
                known.append((row, slot))
    if len(known) < n_known:
        # The generator lists a paper on a few consecutive days only, so the later days
        # re-scrape few base papers: the rest of the day's known part re-lists base records
        # as they were (an exact re-listing, like a digest showing a paper again weeks on).
        known += _relisted_base_records(base_dir, base_truth, n_known - len(known), config.seed)
    if len(known) < n_known or len(fresh) < n_new:
        raise RuntimeError(
            f"{EXTRA_DAYS} extra days gave {len(known)} known / {len(fresh)} new records; "
            f"need {n_known} / {n_new}: raise EXTRA_DAYS"
        )
    chosen = known[:n_known] + fresh[:n_new]
    random.Random(f"digestflow/bench-incremental/{config.seed}").shuffle(chosen)

    # The next day's dump, written by the generator's page writer.
    k = base_files
    name = file_name(config, k)
    date = page_date(config, k)
    new_dir.mkdir(parents=True)
    rows = []
    with open(new_dir / name, "wb") as stream:
        page = PageWriter(stream, is_compact(config, k), date, crlf=False, bom=False)
        for idx, (row, (title, abstract)) in enumerate(chosen):
            page.line(title)
            page.line(abstract)
            drawn_from = f"{row['source_file']}#{row['record_index']}"
            rows.append({**row, "source_file": name, "record_index": idx, "drawn_from": drawn_from})
        page.close()
    _write_truth(new_dir / GROUND_TRUTH_NAME, rows)
    shutil.rmtree(scratch)

    # Measured back from what was written: every slot parses, and its share of known papers.
    assert len(read_slots(new_dir / name)) == len(rows)
    known_rows = [row for row in rows if row["paper_id"] in base_papers]
    return DayData(
        base_dir=str(base_dir),
        new_dir=str(new_dir),
        new_file=name,
        base_files=base_files,
        base_records=len(base_truth),
        new_records=len(rows),
        known_records=len(known_rows),
        known_share=len(known_rows) / len(rows),
        known_variants=dict(sorted(Counter(row["variant"] for row in known_rows).items())),
        seed=config.seed,
    )


def _relisted_base_records(
    base_dir: Path, base_truth: Sequence[dict], count: int, seed: int
) -> list[tuple[dict, tuple[str, str]]]:
    """``count`` base records with an abstract, drawn without replacement (seeded), each as a
    ground-truth row of variant ``exact`` (a copy of a text the corpus holds) and its slot."""
    by_file: dict[str, list[dict]] = {}
    for row in base_truth:
        by_file.setdefault(row["source_file"], []).append(row)
    candidates = []
    for name in sorted(by_file):
        for row, slot in zip(by_file[name], read_slots(base_dir / name), strict=True):
            if slot[1] is not None:
                candidates.append(({**row, "variant": "exact", "relisted": True}, slot))
    random.Random(f"digestflow/bench-incremental/relist/{seed}").shuffle(candidates)
    return candidates[:count]


def _write_truth(path: Path, rows: Sequence[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# ========================================================================================= runs


@dataclass(frozen=True)
class Run:
    name: str
    records_parsed: int
    records_carried: int
    bytes_written: int  # data and delete files of the version the run published
    wall_seconds: float  # timed inside the child, after imports
    process_seconds: float  # the whole child
    peak_rss_mib: float
    summary: dict[str, Any]


def measure_run(run_dir: Path, output: Path, globs: Sequence[str], *flags: str) -> Run:
    """One pipeline run in a fresh child process (the speed section's worker)."""
    argv = [arg for pattern in globs for arg in ("--input", pattern)]
    argv += ["--output", str(output), *flags]
    result_path = run_dir / "worker-result.json"
    log(f"incremental: {run_dir.name} ({' '.join(flags)})")
    summary, elapsed = measure_child(
        pipeline_command(result_path, argv), result_path, run_dir / "pipeline.log"
    )
    return Run(
        name=run_dir.name,
        records_parsed=int(summary.get("records_parsed", 0)),
        records_carried=int(summary.get("records_carried", 0)),
        bytes_written=0 if summary.get("unchanged") else written_bytes(output),
        wall_seconds=float(summary["work_seconds"]),
        process_seconds=round(elapsed, 2),
        peak_rss_mib=float(summary["peak_rss_mib"]),
        summary={k: v for k, v in summary.items() if k != "counters"},
    )


def written_bytes(output: Path) -> int:
    """Bytes of the files the current version of ``output`` wrote itself (an update lists
    the earlier files it did not change; those are not counted)."""
    manifest = versions.read_manifest(str(output))
    listed = commits.listing(str(output), manifest.version) or {}
    own = manifest.root + "/"
    return sum(e.bytes for entries in listed.values() for e in entries if e.path.startswith(own))


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median wall time (of an odd number of runs)."""
    return sorted(runs, key=lambda r: r.wall_seconds)[len(runs) // 2]


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def joined_known_clusters(output: Path, new_file: str) -> int:
    """New-day records the update put in a cluster whose canonical is an earlier record."""
    sql = f"""
        SELECT count(*) FROM records r JOIN records c ON r.cluster_id = c.record_id
        WHERE r.source_file LIKE '%/{new_file}' AND c.source_file NOT LIKE '%/{new_file}'
    """
    return int(catalog.query(str(output), sql)[1][0][0])


def new_lexical_canonicals(output: Path, new_file: str) -> int:
    """New-day records that are the canonical of a lexical cluster (their text is new)."""
    sql = f"""
        SELECT count(*) FROM records WHERE source_file LIKE '%/{new_file}'
        AND (is_canonical OR dup_kind = 'semantic')
    """
    return int(catalog.query(str(output), sql)[1][0][0])


def update_cost(data: DayData, runs_dir: Path) -> dict[str, Any]:
    """Runs (a)-(e) of the module docstring, dedup path only."""
    flags = ("--no_embeddings",)
    base_out = runs_dir / "base" / "output"
    update_out = runs_dir / "update" / "output"
    base = measure_run(
        fresh_dir(runs_dir / "base"), base_out, [data.base_glob], *flags, "--overwrite"
    )
    # The two short runs are what the goal compares: each is repeated (alternating, so
    # load on the machine hits both alike) and the median wall time is reported.
    updates, alones = [], []
    for _ in range(REPEATS):
        fresh_dir(runs_dir / "update")
        shutil.copytree(base_out, update_out)
        updates.append(
            measure_run(runs_dir / "update", update_out, [data.new_glob], *flags, "--incremental")
        )
        alones.append(
            measure_run(
                fresh_dir(runs_dir / "alone"),
                runs_dir / "alone" / "output",
                [data.new_glob],
                *flags,
            )
        )
    updated, alone = median_run(updates), median_run(alones)
    rerun = measure_run(
        fresh_dir(runs_dir / "rerun"),
        runs_dir / "rerun" / "output",
        [data.base_glob, data.new_glob],
        *flags,
    )
    version_before = versions.read_manifest(str(update_out)).version
    readd_dir = fresh_dir(runs_dir / "readd")
    readd = measure_run(readd_dir, update_out, [data.new_glob], *flags, "--incremental")
    version_after = versions.read_manifest(str(update_out)).version

    updated_rows, rerun_rows = assignment_set(update_out), assignment_set(rerun.summary["output"])
    runs = [base, updated, alone, rerun, readd]
    return {
        "data": asdict(data),
        "runs": [asdict(r) for r in runs],
        "update_vs_alone": ratio(updated.wall_seconds, alone.wall_seconds),
        "update_vs_rerun": ratio(updated.wall_seconds, rerun.wall_seconds),
        "goal_update_vs_alone": GOAL,
        "within_goal": ratio(updated.wall_seconds, alone.wall_seconds) <= GOAL,
        "update_counters": {
            key: updated.summary.get(key)
            for key in (
                "records_parsed",
                "records_carried",
                "records_reclustered",
                "records_unchanged",
                "records_joined_known",
                "update_part",
                "embedded_texts",
                "embeddings_reused",
                "files_skipped_already_ingested",
                "rows_written",
                "clusters",
                "every_record_written_once",
            )
        },
        "wall_samples": {
            "update": [r.wall_seconds for r in updates],
            "alone": [r.wall_seconds for r in alones],
        },
        "new_records_joining_known_clusters": joined_known_clusters(update_out, data.new_file),
        "identical_to_rerun": updated_rows == rerun_rows,
        "rows_update": len(updated_rows),
        "rows_rerun": len(rerun_rows),
        "rows_differing": len(updated_rows ^ rerun_rows),
        "readd": {
            "unchanged": readd.summary.get("unchanged") is True,
            "version_before": version_before,
            "version_after": version_after,
            "files_skipped_already_ingested": readd.summary.get("files_skipped_already_ingested"),
            "wall_seconds": readd.wall_seconds,
        },
    }


def embedding_reuse(data: DayData, runs_dir: Path) -> dict[str, Any]:
    """Base build and update with embeddings: the update embeds only never-seen texts."""
    base_out = runs_dir / "base" / "output"
    update_out = runs_dir / "update" / "output"
    base = measure_run(fresh_dir(runs_dir / "base"), base_out, [data.base_glob], "--overwrite")
    fresh_dir(runs_dir / "update")
    shutil.copytree(base_out, update_out)
    updated = measure_run(runs_dir / "update", update_out, [data.new_glob], "--incremental")
    alone = measure_run(
        fresh_dir(runs_dir / "alone"), runs_dir / "alone" / "output", [data.new_glob]
    )
    expected = new_lexical_canonicals(update_out, data.new_file)
    return {
        "data": asdict(data),
        "runs": [asdict(r) for r in (base, updated, alone)],
        "base_embedded_texts": base.summary.get("embedded_texts"),
        "update_embedded_texts": updated.summary.get("embedded_texts"),
        "update_embeddings_reused": updated.summary.get("embeddings_reused"),
        "new_day_canonical_texts": expected,
        "only_new_texts_embedded": updated.summary.get("embedded_texts") == expected,
        "update_vs_alone": ratio(updated.wall_seconds, alone.wall_seconds),
        "update_vs_base_build": ratio(updated.wall_seconds, base.wall_seconds),
    }


# ======================================================================================= tables


LABELS = {
    "base": "a. base build (full run)",
    "update": "b. update (--incremental, new day)",
    "alone": "c. new day alone (full run)",
    "rerun": "d. full re-run (base + new day)",
    "readd": "e. re-add the same day",
}


def cost_table(row: dict[str, Any]) -> str:
    d = row["data"]
    by_name = {r["name"]: r for r in row["runs"]}
    alone, rerun = by_name["alone"]["wall_seconds"], by_name["rerun"]["wall_seconds"]
    canonicals = int(by_name["base"]["summary"]["clusters"])
    title = (
        f"Incremental update (issue #7): one day of {d['new_records']:,} records "
        f"({d['known_share']:.1%} already known) added to a {d['base_records']:,}-record corpus; "
        f"all runs --no_embeddings (embedding its {canonicals:,} canonical texts would take "
        f"~{canonicals / PIPELINE_TEXTS_PER_S / 60:.0f} min here); fresh process each; "
        f"b and c: median of {REPEATS}"
    )
    headers = ["run", "records parsed", "records carried", "MB written", "wall s", "process s"]
    headers += ["peak RSS MiB", "wall / new alone", "wall / re-run"]
    body = [
        [
            LABELS[r["name"]],
            r["records_parsed"],
            r["records_carried"],
            f"{r['bytes_written'] / 1e6:.2f}",
            f"{r['wall_seconds']:.1f}",
            f"{r['process_seconds']:.1f}",
            f"{r['peak_rss_mib']:,.0f}",
            f"{ratio(r['wall_seconds'], alone):.2f}x",
            f"{ratio(r['wall_seconds'], rerun):.2f}x",
        ]
        for r in row["runs"]
    ]
    return render_table(title, headers, body)


def scaling_table(rows: Sequence[dict[str, Any]]) -> str:
    """The update against the day alone at each corpus size, side by side: flat in the
    corpus size is the goal (issue #13)."""
    body = []
    for row in rows:
        by_name = {r["name"]: r for r in row["runs"]}
        update, alone = by_name["update"], by_name["alone"]
        body.append(
            [
                f"{row['data']['base_records']:,}",
                f"{update['wall_seconds']:.2f}",
                f"{alone['wall_seconds']:.2f}",
                f"{row['update_vs_alone']:.2f}x",
                f"{update['bytes_written'] / 1e6:.2f}",
                f"{alone['bytes_written'] / 1e6:.2f}",
                f"{update['peak_rss_mib']:,.0f}",
                "yes" if row["identical_to_rerun"] else "NO",
            ]
        )
    headers = ["corpus records", "update s", "day alone s", "update / alone"]
    headers += ["MB written (update)", "MB written (alone)", "update peak RSS MiB", "== re-run"]
    title = f"Incremental update by corpus size (goal <= {GOAL}x the day alone at every size)"
    return render_table(title, headers, body)


def render_pairs(title: str, pairs: Sequence[tuple[str, str]]) -> str:
    """A titled list of ``name  value`` lines (names padded to one width)."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join([title, "=" * len(title), *(f"{n.ljust(width)}  {v}" for n, v in pairs)])


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:,}" if type(v) is int else f"{k} {v}" for k, v in value.items())
    return str(value)


def checks_table(row: dict[str, Any]) -> str:
    d, readd = row["data"], row["readd"]
    near = sum(v for k, v in d["known_variants"].items() if k != "exact")
    exact = d["known_variants"].get("exact", 0)
    verdict = "within" if row["within_goal"] else "NOT within"
    pairs = [
        (
            "new day: papers seen in a base day",
            f"{d['known_records']} / {d['new_records']} records = {d['known_share']:.1%} "
            f"(ground truth; {exact} exact, {near} near copies)",
        ),
        (
            "new day: joined an earlier cluster",
            f"{row['new_records_joining_known_clusters']} records (in the update's output)",
        ),
        (
            "update / new day alone",
            f"{row['update_vs_alone']:.2f}x (goal <= {row['goal_update_vs_alone']:g}x: {verdict})",
        ),
        (
            "wall s of each run (median used)",
            "update "
            + " / ".join(f"{w:.2f}" for w in row["wall_samples"]["update"])
            + "; alone "
            + " / ".join(f"{w:.2f}" for w in row["wall_samples"]["alone"]),
        ),
        ("update / full re-run", f"{row['update_vs_rerun']:.2f}x"),
        *[
            (
                f"update run_summary.{k}",
                "-" if v is None else f"{v:,}" if type(v) is int else _plain(v),
            )
            for k, v in row["update_counters"].items()
        ],
        (
            "update == full re-run",
            f"identical: {'yes' if row['identical_to_rerun'] else 'no'} "
            "(record_id, cluster_id, is_canonical, duplicate_of, similarity, dup_kind; "
            f"{row['rows_update']:,} vs {row['rows_rerun']:,} rows, "
            f"{row['rows_differing']} differing)",
        ),
        (
            "re-add the same day",
            f"unchanged={readd['unchanged']}, version {readd['version_before']} -> "
            f"{readd['version_after']}, {readd['files_skipped_already_ingested']} file skipped, "
            f"{readd['wall_seconds']:.1f} s",
        ),
    ]
    return render_pairs("Incremental update: counters and checks", pairs)


def embedding_table(row: dict[str, Any]) -> str:
    d = row["data"]
    title = (
        f"Incremental update with embeddings ({d['base_records']:,}-record base + one day of "
        f"{d['new_records']} records, {d['known_share']:.0%} known; fresh process each)"
    )
    headers = ["run", "records parsed", "records carried", "embedded_texts"]
    headers += ["embeddings_reused", "wall s", "peak RSS MiB"]
    body = [
        [
            LABELS[r["name"]],
            r["records_parsed"],
            r["records_carried"],
            r["summary"].get("embedded_texts", 0),
            r["summary"].get("embeddings_reused", 0),
            f"{r['wall_seconds']:.1f}",
            f"{r['peak_rss_mib']:,.0f}",
        ]
        for r in row["runs"]
    ]
    table = render_table(title, headers, body)
    verdict = "yes" if row["only_new_texts_embedded"] else "NO"
    return (
        f"{table}\nupdate embedded {row['update_embedded_texts']} texts; the new day's canonical "
        f"texts: {row['new_day_canonical_texts']} (only new texts embedded: {verdict}); "
        f"update / new alone {row['update_vs_alone']:.2f}x, "
        f"update / base build {row['update_vs_base_build']:.2f}x"
    )


# ====================================================================================== section


def section(settings: Settings, results: dict[str, Any]) -> None:
    seed = settings.seed + 5
    rows = []
    for base in settings.incremental_base_records:
        data = day_data(
            settings.out / "data" / f"incremental-{base}-seed{seed}", base, DAY_RECORDS, seed
        )
        row = update_cost(data, settings.out / "runs" / f"incremental-{base}")
        rows.append(row)
        emit(results, cost_table(row))
        emit(results, checks_table(row))
    results["incremental"] = rows
    if len(rows) > 1:
        emit(results, scaling_table(rows))
    small = settings.incremental_embed_records
    if small <= 0:
        return
    embed_data = day_data(
        settings.out / "data" / f"incremental-embed-{small}-seed{seed}",
        small,
        EMBED_DAY_RECORDS,
        seed,
    )
    embed_row = embedding_reuse(embed_data, settings.out / "runs" / f"incremental-embed-{small}")
    results["incremental_embeddings"] = embed_row
    emit(results, embedding_table(embed_row))
