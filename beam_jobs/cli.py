"""``digestflow`` command line: run | sql | generate. Thin over the library."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import shutil
import sys
from pathlib import Path

import duckdb

from beam_jobs import catalog, pipeline
from beam_jobs.options import UserError
from beam_jobs.synthetic import GeneratorConfig, generate

MAX_CELL = 60


def _format_cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[_format_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def cmd_sql(args: argparse.Namespace) -> int:
    try:
        columns, rows = catalog.query(args.dir, args.query)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    except duckdb.Error as error:
        raise UserError(f"SQL error: {error}") from None
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        print(json.dumps(records, default=_json_default, indent=1))
    else:
        print(format_table(columns, rows))
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from sentence_transformers import SentenceTransformer

    from transforms.embed import EmbedConfig

    config = EmbedConfig(**({"model": args.model} if args.model else {}))
    model = SentenceTransformer(config.model_dir, device="cpu")
    model.max_seq_length = config.max_seq_length
    vector = model.encode([args.text], normalize_embeddings=True)[0]
    try:
        columns, rows = catalog.similar(args.dir, vector, args.k)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    print(format_table(columns, rows))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    config = GeneratorConfig(
        records=args.records,
        seed=args.seed,
        malformed_rate=args.malformed_rate,
        compress=args.compress,
    )
    summary = generate(out, config)
    print(
        f"wrote {summary.records} records ({summary.distinct_papers} distinct papers, "
        f"{summary.malformed} malformed) in {len(summary.files)} files to {out}; "
        f"ground truth: {summary.ground_truth}"
    )
    return 0


def cmd_run(beam_argv: list[str]) -> int:
    summary = pipeline.run(beam_argv)
    if summary is None:
        print("pipeline translated (dry run or template), nothing executed here")
        return 0
    print(
        f"files {summary['files_matched']}, records {summary['records_parsed']}, "
        f"rows written {summary['rows_written']}, clusters {summary['clusters']}, "
        f"dead letters {summary['dead_lettered']} {summary['dead_letters_by_reason']}, "
        f"{summary['wall_seconds']} s -> {summary['output']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digestflow",
        description="Digest dumps of ML papers -> a deduplicated Parquet corpus you query with DuckDB.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the pipeline: --input GLOB [--input GLOB ...] --output DIR [Beam options]",
        add_help=False,
    )
    sql = sub.add_parser("sql", help="query an output directory with DuckDB")
    sql.add_argument("dir", help="output directory of a run")
    sql.add_argument("query", help="SQL over the views records, clusters, dead_letter, papers")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sim = sub.add_parser("similar", help="canonical papers closest in meaning to a text")
    sim.add_argument("dir", help="output directory of a run (with embeddings)")
    sim.add_argument("text", help="free text or a title")
    sim.add_argument("-k", type=int, default=10, help="how many papers")
    sim.add_argument("--model", default=None, help="the model the run used (default: packaged)")
    gen = sub.add_parser("generate", help="write synthetic digest dumps with ground truth")
    gen.add_argument("--out", required=True)
    gen.add_argument("--records", type=int, default=2000)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--malformed_rate", type=float, default=0.01)
    gen.add_argument("--compress", choices=["gz", "bz2", "mixed"], default=None)
    gen.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] == "run":
            if any(a in ("-h", "--help") for a in argv[1:]):
                from beam_jobs.options import DigestflowOptions

                DigestflowOptions(["--help"])
                return 0
            return cmd_run(argv[1:])
        args = build_parser().parse_args(argv)
        return {"sql": cmd_sql, "generate": cmd_generate, "similar": cmd_similar}[args.command](
            args
        )
    except (UserError, ValueError) as error:
        print(f"digestflow: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
