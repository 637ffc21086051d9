"""Content fingerprints of a digestflow output, to show a refactor changed no output.

Each table of the current version is read through DuckDB, its rows sorted and hashed, so
two outputs compare equal when they hold the same rows, whatever their file names, file
count or row order. Used for the layout change (#12): fingerprints taken from the old code
and the new one on the same generated dumps must be identical.

    python -m bench.fingerprint OUT > before.json       # on the old checkout
    python -m bench.fingerprint OUT --against before.json   # on the new one: exit 1 on a diff
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

import duckdb

from beam_jobs.query.catalog import table_source
from beam_jobs.store import versions
from beam_jobs.store.tables import table_files
from transforms.schema import TABLES


def fingerprint(output: str) -> dict[str, dict[str, Any]]:
    """{table: {rows, columns, sha256 of the sorted rows}} of the current version."""
    root = versions.current_root(output)
    con = duckdb.connect()
    result: dict[str, dict[str, Any]] = {}
    for table in sorted(TABLES):
        files = table_files(root, table)
        if not files:
            continue
        relation = con.execute(f"SELECT * FROM {table_source(root, table)}")
        columns = [d[0] for d in relation.description]
        rows = sorted(repr(row) for row in relation.fetchall())
        digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        result[table] = {"rows": len(rows), "columns": columns, "sha256": digest}
    return result


def differences(before: dict, after: dict) -> dict[str, tuple[Any, Any]]:
    return {
        table: (before.get(table), after.get(table))
        for table in sorted(set(before) | set(after))
        if before.get(table) != after.get(table)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fingerprint", description=__doc__)
    parser.add_argument("output", help="a digestflow output directory")
    parser.add_argument("--against", help="fingerprints (JSON) to compare with")
    args = parser.parse_args(argv)
    current = fingerprint(args.output)
    if not args.against:
        print(json.dumps(current, indent=1))
        return 0
    with open(args.against, encoding="utf-8") as handle:
        diff = differences(json.load(handle), current)
    for table, (old, new) in diff.items():
        print(f"{table}: {old} != {new}", file=sys.stderr)
    print("identical" if not diff else f"{len(diff)} table(s) differ")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
