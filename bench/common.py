"""What every ``make bench`` section shares: the run :class:`Settings`, logging and plain-text
tables, generated corpora cached under ``<out>/data``, and pipeline runs in a fresh child
process (:func:`measure_child`, :func:`pipeline_command`)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.options import DigestflowOptions, dedup_config
from beam_jobs.query import catalog
from beam_jobs.synthetic import GeneratorConfig, generate
from transforms.dedup.minhash import MinHashConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real digest dumps (not in the repository): sections that need them skip without them.
SEEDS = REPO_ROOT.parent / "shared" / "seeds"
# A cached corpus is regenerated when any source of the generator package changes.
GENERATOR_PACKAGE = REPO_ROOT / "beam_jobs" / "synthetic"
# ``python -m bench.harness _pipeline-worker <result.json> <pipeline args>``: the child process
# of a measured pipeline run (:func:`bench.harness.pipeline_worker`).
PIPELINE_WORKER = "_pipeline-worker"
DEDUP_ONLY = ("--no_embeddings",)


@dataclass(frozen=True)
class Settings:
    out: Path
    sections: tuple[str, ...]
    seed: int
    quality_records: int
    revision_rate: float
    thresholds: tuple[float, ...]
    char_thresholds: tuple[float, ...]
    sizes: tuple[int, ...]
    determinism_records: int
    with_embeddings: bool
    incremental_base_records: tuple[int, ...] = (50_000, 200_000)
    incremental_embed_records: int = 1_000


# ============================================================================== small helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A titled plain-text table; the first column left-aligned, the others right-aligned."""
    cells = [[fmt(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, "=" * len(title), line(headers), rule, *map(line, cells)])


def emit(results: dict[str, Any], table: str) -> None:
    results.setdefault("tables", []).append(table)
    print(table + "\n", flush=True)


def default_minhash() -> MinHashConfig:
    """The algorithm settings of a run with no flags, straight from the option parser."""
    return dedup_config(PipelineOptions([]).view_as(DigestflowOptions)).minhash


# ===================================================================================== inputs


def generator_sources() -> list[Path]:
    return sorted(GENERATOR_PACKAGE.rglob("*.py"))


def corpus_stamp(config: GeneratorConfig) -> dict[str, Any]:
    digest = hashlib.sha256()
    for path in generator_sources():
        digest.update(path.read_bytes())
    return {"config": {k: str(v) for k, v in asdict(config).items()}, "source": digest.hexdigest()}


def corpus(settings: Settings, name: str, config: GeneratorConfig) -> Path:
    """A generated corpus under ``<out>/data/<name>``, regenerated only when it is stale."""
    directory = settings.out / "data" / name
    stamp_path = directory / "generator.json"
    stamp = corpus_stamp(config)
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    log(f"generating {config.records:,} records into {directory}")
    generate(directory, config)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return directory


def input_glob(directory: Path) -> str:
    return str(directory.resolve() / "*.txt*")


def pipeline_argv(inputs: Path, output: Path, *flags: str, embeddings: bool = False) -> list[str]:
    argv = [
        "--input",
        input_glob(inputs),
        "--output",
        str(output),
        "--overwrite",
        "--quiet",
        *flags,
    ]
    return argv if embeddings else argv + list(DEDUP_ONLY)


# ============================================================================= child processes


def measure_child(
    cmd: list[str], result_path: Path, log_path: Path, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run ``cmd`` in a fresh process; (the JSON it wrote to ``result_path``, its seconds)."""
    result_path.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        started = time.perf_counter()
        code = subprocess.run(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, check=False
        ).returncode
        elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {code}; see {log_path}")
    return json.loads(result_path.read_text()), elapsed


def pipeline_command(result_path: Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.harness", PIPELINE_WORKER, str(result_path), *argv]


# =================================================================================== outputs


def assignment_set(output: Path) -> set[tuple]:
    sql = (
        "SELECT record_id, cluster_id, is_canonical, duplicate_of, similarity, dup_kind "
        "FROM records"
    )
    return set(catalog.query(str(output), sql)[1])
