"""``digestflow`` command line: parse the command and dispatch it (run | sql | catalog |
report | similar | publish | generate). Thin over the library: query commands never import
the pipeline (and with it torch)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import duckdb

from beam_jobs.cli.formatting import format_table, print_rows
from beam_jobs.cli.shell import sql_shell
from beam_jobs.errors import UserError
from beam_jobs.query import catalog
from beam_jobs.synthetic.generator import GeneratorConfig, generate


def cmd_sql(args: argparse.Namespace) -> int:
    if args.query is None:
        try:
            connection = catalog.connect(args.dir)
        except FileNotFoundError as error:
            raise UserError(str(error)) from None
        try:
            return sql_shell(connection, sys.stdin, sys.stdout)
        finally:
            connection.close()
    try:
        columns, rows = catalog.query(args.dir, args.query)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    except duckdb.Error as error:
        raise UserError(f"SQL error: {error}") from None
    print_rows(columns, rows, args.format)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    try:
        if args.sql:
            print(catalog.catalog_script(args.dir), end="")
            return 0
        connection = catalog.connect(args.dir)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    try:
        rows = connection.execute(
            "SELECT table_name AS view, column_name AS column, data_type AS type "
            "FROM information_schema.columns ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        connection.close()
    print_rows(["view", "column", "type"], rows, args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.list:
        rows = [(name, catalog.report_summary(name)) for name in catalog.report_names()]
        print_rows(["report", "answers"], rows, args.format)
        return 0
    if args.html:
        from beam_jobs.query import report_html

        try:
            written = report_html.write_report(args.dir, args.html)
        except FileNotFoundError as error:
            raise UserError(str(error)) from None
        print(f"wrote {written}")
        return 0
    if not args.name:
        raise UserError("name a report (see --list), or pass --list or --html FILE")
    if args.sql:
        print(catalog.report_sql(args.name), end="")
        return 0
    try:
        columns, rows = catalog.report(args.dir, args.name)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    print_rows(columns, rows, args.format)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from sentence_transformers import SentenceTransformer

    from transforms.enrich.embed import EmbedConfig

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


def cmd_publish(args: argparse.Namespace) -> int:
    from beam_jobs import launcher  # imports Beam's ML stack (torch): only when needed

    version = launcher.publish_translated_run(args.dir)
    print(f"{args.dir}: version {version} published; digestflow sql/report can read it")
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
    from beam_jobs import launcher  # imports Beam's ML stack (torch): only when needed

    summary = launcher.run(beam_argv)
    if summary is None:
        print("pipeline translated (dry run or template), nothing executed here")
        return 0
    if summary.get("unchanged"):
        print(
            f"nothing new: all {summary['files_skipped_already_ingested']} input dumps were "
            f"ingested before; {summary['output']} stays at version {summary['version']}"
        )
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
    sql.add_argument(
        "query",
        nargs="?",
        default=None,
        help="SQL over the views records, clusters, dead_letter, papers "
        "(omit it for a shell reading ';'-terminated statements from stdin)",
    )
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    cat = sub.add_parser("catalog", help="the DuckDB views of an output directory")
    cat.add_argument("dir", help="output directory of a run")
    cat.add_argument(
        "--sql", action="store_true", help="print the CREATE VIEW statements (for plain duckdb)"
    )
    cat.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rep = sub.add_parser("report", help="a named report (SQL shipped in the package), or HTML")
    rep.add_argument("dir", help="output directory of a run")
    rep.add_argument("name", nargs="?", default=None, help="report name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the reports and what they answer")
    rep.add_argument("--sql", action="store_true", help="print the report's SQL instead")
    rep.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with charts")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sim = sub.add_parser("similar", help="canonical papers closest in meaning to a text")
    sim.add_argument("dir", help="output directory of a run (with embeddings)")
    sim.add_argument("text", help="free text or a title")
    sim.add_argument("-k", type=int, default=10, help="how many papers")
    sim.add_argument("--model", default=None, help="the model the run used (default: packaged)")
    pub = sub.add_parser(
        "publish", help="make the output of a Flex Template job readable (write its manifest)"
    )
    pub.add_argument("dir", help="output directory of a job launched from the template")
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
        commands = {
            "sql": cmd_sql,
            "catalog": cmd_catalog,
            "report": cmd_report,
            "generate": cmd_generate,
            "similar": cmd_similar,
            "publish": cmd_publish,
        }
        return commands[args.command](args)
    except (UserError, ValueError) as error:
        print(f"digestflow: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
