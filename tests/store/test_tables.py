"""Superseded rows on hand-written versions: which delete file applies to which data file,
and every reader (pyarrow, chunked, DuckDB views, the planner's filtered read, compaction)
sees the same live rows."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from beam_jobs.cli.main import main
from beam_jobs.store import commits, compaction, versions
from beam_jobs.store.tables import (
    deletes_path,
    iter_table,
    read_table,
    select_rows,
    table_slices,
    table_source,
    write_deletes,
)
from transforms.parquet import write_parquet_file
from transforms.schema import CLUSTERS_SCHEMA, to_table

ROOTS = {1: "v000001-aaaaaaaa", 2: "v000002-bbbbbbbb", 3: "v000003-cccccccc"}


def _clusters(*rows: tuple[str, int]) -> pa.Table:
    return to_table(
        [
            {
                "cluster_id": cid,
                "canonical_record_id": cid,
                "size": size,
                "distinct_texts": 1,
                "first_digest_date": None,
                "last_digest_date": None,
            }
            for cid, size in rows
        ],
        CLUSTERS_SCHEMA,
    )


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """Three versions of a clusters table: 1 writes c1 c2 c3; 2 rewrites c2 and adds c4;
    3 rewrites c1 and drops c4 (merged away). Version 3 lists every file."""
    out = tmp_path / "out"
    files: dict[str, list[str]] = {"clusters": [], "clusters.deletes": []}
    written = {
        1: _clusters(("c1", 1), ("c2", 1), ("c3", 1)),
        2: _clusters(("c2", 5), ("c4", 1)),
        3: _clusters(("c1", 9)),
    }
    deleted = {2: {"c2"}, 3: {"c1", "c4"}}
    for version, rows in written.items():
        root = out / ROOTS[version]
        (root / "clusters").mkdir(parents=True)
        path = root / "clusters" / "part-0.parquet"
        write_parquet_file(rows, str(path))
        files["clusters"].append(str(path))
        if version in deleted:
            files["clusters.deletes"].append(write_deletes(str(root), "clusters", deleted[version]))
    extra = {"files": commits.describe_files(str(out), files)}
    manifest = versions.Manifest(3, ROOTS[3], extra)
    commits.create(str(out), 3, json.loads(manifest.to_json()))
    return out


LIVE = {("c1", 9), ("c2", 5), ("c3", 1)}


def _pairs(table: pa.Table) -> set[tuple[str, int]]:
    return set(zip(table["cluster_id"].to_pylist(), table["size"].to_pylist(), strict=True))


def test_a_delete_file_hides_rows_of_older_versions_only(output: Path) -> None:
    root = versions.current_root(str(output))
    slices = table_slices(root, "clusters")
    names = [[Path(p).parts[-3] for p in s.deletes] for s in slices]
    assert names == [[ROOTS[2], ROOTS[3]], [ROOTS[3]], []]
    assert all(s.key == "cluster_id" for s in slices)
    assert _pairs(read_table(root, "clusters")) == LIVE
    # the key column is read for the filter even when it is not asked for
    assert sorted(read_table(root, "clusters", ["size"])["size"].to_pylist()) == [1, 5, 9]
    assert _pairs(pa.concat_tables(iter_table(root, "clusters"))) == LIVE


def test_duckdb_and_the_filtered_read_see_the_same_live_rows(output: Path) -> None:
    root = versions.current_root(str(output))
    rows = duckdb.sql(f"SELECT cluster_id, size FROM {table_source(root, 'clusters')}").fetchall()
    assert set(rows) == LIVE
    found = select_rows(root, "clusters", ["cluster_id", "size"], "cluster_id", {"c1", "c2", "c4"})
    assert _pairs(found) == {("c1", 9), ("c2", 5)}
    assert found.schema.field("size").type == pa.int64()


def test_a_missing_delete_file_is_refused_naming_it(output: Path) -> None:
    Path(deletes_path(str(output / ROOTS[2]), "clusters")).unlink()
    with pytest.raises(versions.DamagedOutput, match=r"_deletes/clusters.parquet is missing"):
        versions.current_root(str(output))


def test_compaction_keeps_the_live_rows_in_fresh_files(output: Path, capsys) -> None:
    root = versions.current_root(str(output))
    assert compaction.needs_compaction(root)
    done = compaction.compact(str(output))
    assert (done.source, done.version) == (3, 4)
    assert done.tables["clusters"] == (3, 1, 3)
    compacted = versions.current_root(str(output))
    assert not compaction.needs_compaction(compacted)
    assert _pairs(read_table(compacted, "clusters")) == LIVE
    assert table_slices(compacted, "clusters")[0].deletes == ()
    # the version before stays readable; compacting again publishes nothing
    assert main(["compact", str(output), "--format", "csv"]) == 0
    assert "already compact" in capsys.readouterr().err
    assert commits.committed_versions(str(output)) == [3, 4]


def test_an_output_without_a_commit_log_cannot_be_compacted(tmp_path: Path, capsys) -> None:
    out = tmp_path / "old"
    (out / "v000001" / "records").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"format": 1, "version": 1, "root": "v000001"}))
    assert main(["compact", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("digestflow: error:") and "before digestflow kept a commit log" in err
    assert err.count("\n") == 1
