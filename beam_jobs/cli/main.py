"""``digestflow`` command line: parse the command and dispatch it (run | sql | catalog |
report | similar | verify | compact | publish | generate). Thin over the library: query commands never import
the pipeline (and with it torch). Every failure a user can cause, from a bad option value to
a damaged output directory, ends as one ``digestflow: error:`` line and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb

from beam_jobs.cli.formatting import _json_default as json_default  # one date encoder
from beam_jobs.cli.formatting import format_table, print_rows
from beam_jobs.cli.shell import sql_shell
from beam_jobs.errors import UserError
from beam_jobs.query import catalog
from beam_jobs.synthetic.generator import GeneratorConfig, generate


@contextlib.contextmanager
def reading(output: str, what: str = "reading") -> Iterator[None]:
    """Errors of reading an output, as the user's errors: a missing output, or a DuckDB
    error the checks before the views could not foresee (a damaged data page)."""
    try:
        yield
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    except duckdb.Error as error:
        raise UserError(f"{what} {output} failed: {error}") from None


def cmd_sql(args: argparse.Namespace) -> int:
    if args.query is None:
        with reading(args.dir):
            connection = catalog.connect(args.dir, args.snapshot)
        try:
            return sql_shell(connection, sys.stdin, sys.stdout)
        finally:
            connection.close()
    with reading(args.dir):
        connection = catalog.connect(args.dir, args.snapshot)
    try:
        cursor = connection.execute(args.query)
        if cursor is None:  # DuckDB's answer to a query of only blanks, ';' or comments
            raise UserError("the query holds no SQL statement")
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall()
    except duckdb.Error as error:
        raise UserError(f"SQL error: {error}") from None
    finally:
        connection.close()
    print_rows(columns, rows, args.format)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    with reading(args.dir):
        if args.sql:
            print(catalog.catalog_script(args.dir, args.snapshot), end="")
            return 0
        connection = catalog.connect(args.dir, args.snapshot)
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
        rows.append((CHANGES, CHANGES_SUMMARY))
        print_rows(["report", "answers"], sorted(rows), args.format)
        return 0
    if args.since is not None and not (args.name or "").startswith(CHANGES):
        raise UserError("--since applies to the changes reports only")
    if args.snapshot is not None and (args.html or (args.name or "").startswith(CHANGES)):
        raise UserError("--snapshot applies to the named reports, not to changes or --html")
    if args.name == CHANGES:
        return _report_changes(args)
    if args.html:
        from beam_jobs.query import report_html

        with reading(args.dir, "the report over"):
            written = report_html.write_report(args.dir, args.html)
        print(f"wrote {written}")
        return 0
    if not args.name:
        raise UserError("name a report (see --list), or pass --list or --html FILE")
    if args.sql:
        print(catalog.report_sql(args.name), end="")
        return 0
    with reading(args.dir, f"report {args.name} over"):
        columns, rows = catalog.report(args.dir, args.name, args.since, args.snapshot)
    print_rows(columns, rows, args.format)
    return 0


# ``report DIR changes``: the four changes_* reports as one, with a heading per section
CHANGES = "changes"
CHANGES_SUMMARY = (
    "what changed in the latest update (or since --since VERSION): new papers, new versions "
    "of known papers, papers listed again, topic share; the changes_* reports together"
)


def _report_changes(args: argparse.Namespace) -> int:
    from beam_jobs.query import changes

    if args.sql:
        print("\n".join(catalog.report_sql(name) for name in changes.report_names()), end="")
        return 0
    with reading(args.dir, "report changes over"):
        result = changes.changes(args.dir, args.since)
    if args.format == "json":
        document = {
            "version": result.version,
            "since": result.since,
            "sections": [
                {
                    "name": section.name,
                    "title": section.title,
                    "doc": section.doc,
                    "note": section.note,
                    "rows": [dict(zip(section.columns, row, strict=True)) for row in section.rows],
                }
                for section in result.sections
            ],
        }
        print(json.dumps(document, default=json_default, indent=1))
        return 0
    since = (
        f"since version {result.since}"
        if result.since is not None
        else "no earlier version kept: every paper is new"
    )
    print(f"# changes in version {result.version} ({since})")
    for section in result.sections:
        # csv: one block per section, each with its own header row, after a '#' line
        print(f"\n# {section.title}: {section.doc}")
        if section.note:
            print(f"# {section.note}")
        print_rows(section.columns, section.rows, args.format)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    with reading(args.dir):
        catalog.searchable_dim(args.dir)  # before the model loads: no embeddings, no search
    if args.model is not None and not os.path.isdir(args.model):
        raise UserError(f"--model {args.model}: no such directory")

    from transforms.enrich.embed import EmbedConfig
    from transforms.enrich.encoders import DEFAULT_BACKEND, load_encoder, missing_runtime

    # The query is embedded as the output's papers were: same backend (int8 vectors are not
    # fp32's) and sequence length. torch and openvino give the same vectors, and openvino
    # loads from its cached export without importing torch: seconds less per search.
    used = catalog.embedding_settings(args.dir)
    backend = used.get("backend") or DEFAULT_BACKEND
    backend = DEFAULT_BACKEND if backend == "torch" else backend
    missing = missing_runtime(backend)
    if missing is not None:
        raise UserError(f"this output was embedded with {backend}: {missing}")
    config = EmbedConfig(
        **({"model": args.model} if args.model else {}),
        backend=backend,
        max_seq_length=int(used.get("max_seq_length") or 256),
    )
    try:
        model = load_encoder(config.model_dir, config.backend, config.max_seq_length)
    except (OSError, ValueError, KeyError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--model {config.model_dir}: not a usable model ({message})") from None
    vector = model.encode([args.text], normalize_embeddings=True)[0]
    with reading(args.dir, "searching"):
        columns, rows = catalog.similar(args.dir, vector, args.k)
    print(format_table(columns, rows))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with reading(args.dir, "verifying"):
        result = catalog.verify(args.dir, args.snapshot)
    rows = [(table, *counts) for table, counts in result.tables.items()]
    print_rows(["table", "files", "rows", "bytes"], rows, args.format)
    how = {
        "sha256": "every byte matches its SHA-256",
        "size+rows": "sizes and row counts match (an object store: no checksum is recorded)",
        "footers": "footers and row counts read (written before digestflow recorded "
        "checksums: a new run records them)",
    }[result.checked]
    files = sum(counts[0] for counts in result.tables.values())
    print(f"version {result.version}: {files} files as written; {how}", file=sys.stderr)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from beam_jobs.store.compaction import compact

    if args.keep_versions < 2:
        raise UserError(f"--keep_versions must be >= 2, got {args.keep_versions}")
    with reading(args.dir, "compacting"):
        result = compact(args.dir, keep=args.keep_versions)
    rows = [(table, *counts) for table, counts in result.tables.items()]
    print_rows(["table", "files_before", "files_after", "rows"], rows, args.format)
    if result.version is None:
        print(
            f"version {result.source}: already compact (only its own files, no deletes)",
            file=sys.stderr,
        )
    else:
        print(
            f"version {result.version} published: the rows of version {result.source} in "
            "fresh files",
            file=sys.stderr,
        )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from beam_jobs import launcher  # imports Beam's ML stack (torch): only when needed

    version = launcher.publish_translated_run(args.dir)
    print(f"{args.dir}: version {version} published; digestflow sql/report can read it")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    try:
        config = GeneratorConfig(
            records=args.records,
            seed=args.seed,
            records_per_file=args.records_per_file,
            malformed_rate=args.malformed_rate,
            revision_rate=args.revision_rate,
            max_listing_days=args.max_listing_days,
            compress=args.compress,
        )
    except ValueError as error:
        raise UserError(f"generate: {error}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
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


# ``similar`` prints its matches as a table: more than this is a dump, not a search result.
MAX_SIMILAR = 1000


class Parser(argparse.ArgumentParser):
    """argparse's own errors as the CLI's one error line (it would print the usage first),
    for the subcommands' parsers too: ``add_subparsers`` makes them of this class."""

    def error(self, message: str):
        raise UserError(f"{message} (see '{self.prog} --help')")


def whole_number(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse


def _snapshot_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--snapshot",
        type=int,
        metavar="VERSION",
        default=None,
        help="read this earlier version instead of the current one (one of the "
        "--keep_versions an output keeps; see manifest.json for the current number)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    _snapshot_option(sql)
    cat = sub.add_parser("catalog", help="the DuckDB views of an output directory")
    cat.add_argument("dir", help="output directory of a run")
    cat.add_argument(
        "--sql", action="store_true", help="print the CREATE VIEW statements (for plain duckdb)"
    )
    cat.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _snapshot_option(cat)
    rep = sub.add_parser("report", help="a named report (SQL shipped in the package), or HTML")
    rep.add_argument("dir", help="output directory of a run")
    rep.add_argument("name", nargs="?", default=None, help="report name (see --list)")
    rep.add_argument("--list", action="store_true", help="list the reports and what they answer")
    rep.add_argument("--sql", action="store_true", help="print the report's SQL instead")
    rep.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with charts")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rep.add_argument(
        "--since",
        type=int,
        metavar="VERSION",
        default=None,
        help="changes reports: compare with this earlier version (default: the previous one)",
    )
    _snapshot_option(rep)
    ver = sub.add_parser(
        "verify", help="read every file of an output and check it against its commit record"
    )
    ver.add_argument("dir", help="output directory of a run")
    ver.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _snapshot_option(ver)
    com = sub.add_parser(
        "compact",
        help="rewrite the live rows of an output into fresh files (after many updates)",
    )
    com.add_argument("dir", help="output directory of a run")
    com.add_argument("--format", choices=["table", "csv", "json"], default="table")
    com.add_argument(
        "--keep_versions",
        type=int,
        default=2,
        help="versions that stay readable with --snapshot (as for run; at least 2)",
    )
    sim = sub.add_parser("similar", help="canonical papers closest in meaning to a text")
    sim.add_argument("dir", help="output directory of a run (with embeddings)")
    sim.add_argument("text", help="free text or a title")
    sim.add_argument(
        "-k",
        type=whole_number(1, MAX_SIMILAR),
        default=10,
        help=f"how many papers (1 to {MAX_SIMILAR})",
    )
    sim.add_argument("--model", default=None, help="the model the run used (default: packaged)")
    pub = sub.add_parser(
        "publish", help="make the output of a Flex Template job readable (write its manifest)"
    )
    pub.add_argument("dir", help="output directory of a job launched from the template")
    gen = sub.add_parser("generate", help="write synthetic digest dumps with ground truth")
    gen.add_argument("--out", required=True)
    gen.add_argument("--records", type=int, default=2000)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--records_per_file", type=int, default=200, help="records per digest day (one file each)"
    )
    gen.add_argument("--malformed_rate", type=float, default=0.01)
    gen.add_argument(
        "--revision_rate", type=float, default=0.01, help="share of slots that are a v2 of a paper"
    )
    gen.add_argument(
        "--max_listing_days",
        type=int,
        default=None,
        help="most days one paper is listed on (default: 10%% of the days, 2 to 5)",
    )
    gen.add_argument("--compress", choices=["gz", "bz2", "mixed"], default=None)
    gen.add_argument("--overwrite", action="store_true")
    return parser


def parse_command(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parse_args``, but ``sql DIR --snapshot 2 "SELECT ..."`` works too: argparse fills an
    optional positional (the query) before it reads the options that follow the one before
    it, and would call the query an unrecognized argument."""
    args, extra = parser.parse_known_args(argv)
    lone = len(extra) == 1 and not extra[0].startswith("-")
    if lone and args.command == "sql" and args.query is None:
        args.query, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


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
        args = parse_command(build_parser(), argv)
        commands = {
            "sql": cmd_sql,
            "catalog": cmd_catalog,
            "report": cmd_report,
            "generate": cmd_generate,
            "similar": cmd_similar,
            "publish": cmd_publish,
            "verify": cmd_verify,
            "compact": cmd_compact,
        }
        return commands[args.command](args)
    except (UserError, ValueError) as error:
        print(f"digestflow: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:
        # the machine's side of a user's problem: a full disk, a path that is not allowed
        print(f"digestflow: error: {one_line(str(error))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """A message on one line (DuckDB's span several: the error, the query, a ``^`` marker)."""
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line.strip("^ ")) or "failed"


if __name__ == "__main__":
    sys.exit(main())
