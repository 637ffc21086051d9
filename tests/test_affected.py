"""The part of a corpus an update clusters again (transforms.affected), and the copy of the
rest (beam_jobs.carry): pure functions on small hand-made indexes and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_jobs import carry
from transforms.affected import Affected, NewTexts, PreviousIndex, affected_part
from transforms.schema import records_schema, to_table

BANDS = 3


def _index(texts: dict[str, list[int]], records: list[tuple[str, str, str]], names=None):
    """texts: content_hash -> band hashes; records: (record_id, content_hash, cluster_id)."""
    record_ids, hashes, clusters = zip(*records, strict=True)
    return PreviousIndex(
        records=pa.table(
            {"record_id": list(record_ids), "content_hash": list(hashes), "cluster_id": clusters}
        ),
        text_hashes=pa.array(list(texts)),
        bands=np.array(list(texts.values()), dtype=np.uint64).reshape(-1, BANDS),
        names=names,
    )


# Texts a..f; a and b share band 0 (one cluster), b and d share band 2 but are in two
# clusters (a candidate pair that failed verification), e and f are alone.
TEXTS = {
    "a": [1, 10, 100],
    "b": [1, 11, 101],
    "d": [2, 12, 101],
    "e": [3, 13, 103],
    "f": [4, 14, 104],
}
RECORDS = [
    ("ra", "a", "ra"),
    ("rb", "b", "ra"),
    ("rb2", "b", "ra"),  # an exact copy of b
    ("rd", "d", "rd"),
    ("re", "e", "re"),
    ("rf", "f", "rf"),
]


def test_a_new_text_brings_its_buckets_and_their_whole_clusters() -> None:
    index = _index(TEXTS, RECORDS)
    # new text n shares band 1 with a only; a's cluster holds b, whose band 2 bucket holds d
    found = affected_part(index, NewTexts(["n"], {"n": np.array([9, 10, 99], np.uint64)}))
    assert found.cluster_ids == {"ra", "rd"}
    assert found.record_ids == {"ra", "rb", "rb2", "rd"}
    assert found.content_hashes == {"a", "b", "d"}
    assert not found.everything and found.skip_names == frozenset()


def test_a_band_at_another_position_is_another_bucket() -> None:
    index = _index(TEXTS, RECORDS)
    # 10 is a's hash in band 1; in band 0 it matches nothing
    found = affected_part(index, NewTexts(["n"], {"n": np.array([10, 0, 0], np.uint64)}))
    assert found.cluster_ids == frozenset()


def test_a_new_copy_of_a_known_text_brings_its_cluster_only() -> None:
    index = _index(TEXTS, RECORDS)
    found = affected_part(index, NewTexts(["e"], {}))
    assert found.cluster_ids == {"re"} and found.record_ids == {"re"}


def _names(rows: list[tuple[str, list[str], bool]]) -> pa.Table:
    record_ids, names, candidate = zip(*rows, strict=True)
    return pa.table(
        {"record_id": list(record_ids), "names": list(names), "candidate": list(candidate)}
    )


def test_names_bring_canonicals_that_share_them_unless_the_name_is_common() -> None:
    names = _names(
        [
            ("ra", ["flowprune"], True),
            ("rb", ["flowprune"], False),
            ("rb2", ["flowprune"], False),
            ("rd", ["gans"], True),
            ("re", ["gans", "flowprune"], True),  # shares the method name: comes in
            ("rf", ["gans"], True),
        ]
    )
    index = _index(TEXTS, RECORDS, names)
    # f names "gans", which 2 candidates outside (rd, re) hold: more than max 1, so the
    # full run skips that bucket and the update must skip it too
    found = affected_part(index, NewTexts(["f"], {}, [set()]), max_bucket=1)
    assert found.cluster_ids == {"rf"} and found.skip_names == {"gans"}
    # a brings b, b's bucket brings d; "flowprune" brings re; then only rf holds "gans"
    # outside, which fits: it comes in too, and nothing is skipped
    found = affected_part(index, NewTexts(["a"], {}, [set()]), max_bucket=1)
    assert found.cluster_ids == {"ra", "rd", "re", "rf"} and found.skip_names == frozenset()
    # a new text naming "gans" with room for its holders brings all of them
    new = NewTexts(["n"], {"n": np.array([5, 15, 105], np.uint64)}, [{"gans"}])
    assert affected_part(index, new, max_bucket=4).cluster_ids == {"rd", "re", "rf", "ra"}
    # without a semantic merge, names play no part
    assert affected_part(index, new).cluster_ids == frozenset()


def test_without_filters_rows_by_the_part() -> None:
    table = pa.table({"cluster_id": ["x", "y", "x", "z"], "v": [1, 2, 3, 4]})
    assert carry.without(table, "cluster_id", frozenset({"x"}))["v"].to_pylist() == [2, 4]
    assert carry.without(table, "cluster_id", frozenset()) is table
    part = Affected(cluster_ids=frozenset({"c"}), record_ids=frozenset({"r"}))
    assert carry.excluded_values("clusters", part) == {"c"}
    assert carry.excluded_values("paper_names", part) == {"r"}


def test_records_with_null_embeddings_are_read_back_whole(tmp_path: Path) -> None:
    """pyarrow cannot read a fixed-size list holding nulls back; the carry reads it through
    DuckDB and rebuilds the column exactly."""
    schema = records_schema(4)
    row = {
        "record_id": "r1",
        "source_file": "f.txt",
        "record_index": 0,
        "digest_date": None,
        "title": "T",
        "abstract": "A",
        "content_hash": "h",
        "code_urls": ["https://x"],
        "cluster_id": "r1",
        "is_canonical": True,
        "duplicate_of": None,
        "similarity": None,
        "dup_kind": None,
        "embedding": None,
        "tags": [],
        "tag_scores": [{"tag": "nlp", "score": 0.5}],
    }
    rows = [
        row,
        {**row, "record_id": "r2", "embedding": [0.5, 0.25, 0.0, -1.0]},
        {**row, "record_id": "r3"},
    ]
    path = tmp_path / "part.parquet"
    pq.write_table(to_table(rows, schema), path)
    table = carry.read_records_file(str(path))
    assert table.schema == schema
    assert table.to_pylist() == rows
    only_nulls = tmp_path / "nulls.parquet"
    pq.write_table(to_table([row], schema), only_nulls)
    assert carry.read_records_file(str(only_nulls)).to_pylist() == [row]
