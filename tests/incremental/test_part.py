"""The part of a corpus an update clusters again (transforms.incremental.part), and the copy of the
rest (beam_jobs.incremental.background): pure functions on small hand-made indexes and files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_jobs.incremental import background
from beam_jobs.store import rows as store_rows
from transforms.incremental.joined import JoinedCopy, grown_cluster, joined_copies, joined_row
from transforms.incremental.part import NewTexts, PreviousIndex, UpdatePart, affected_part
from transforms.records import Record
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
    assert store_rows.without(table, "cluster_id", frozenset({"x"}))["v"].to_pylist() == [2, 4]
    assert store_rows.without(table, "cluster_id", frozenset()) is table
    part = UpdatePart(cluster_ids=frozenset({"c"}), record_ids=frozenset({"r"}))
    assert background.excluded_values("clusters", part) == {"c"}
    assert background.excluded_values("paper_names", part) == {"r"}


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
    table = _read_back(path)
    assert table.schema == schema
    assert table.to_pylist() == rows
    only_nulls = tmp_path / "nulls.parquet"
    pq.write_table(to_table([row], schema), only_nulls)
    assert _read_back(only_nulls).to_pylist() == [row]


def _read_back(path: Path) -> pa.Table:
    return pa.concat_tables(list(store_rows.iter_file(str(path))))


# ------------------------------------------------------------------ copies of known texts


def _record(record_id: str, text: str, day: int, index: int = 0):
    return Record(
        record_id=record_id,
        source_file=f"d{day}.txt",
        record_index=index,
        digest_date=dt.date(2024, 3, day),
        title=text,
        abstract=text,
        content_hash=text,
    )


def _roles() -> pa.Table:
    """Old records of texts a, b (a near copy of a) and s (a revision merged into a's
    cluster): ra is the canonical; rb2 an exact copy of b."""
    rows = [
        ("ra", "a", "ra", True, None, None, None, 2),
        ("rb", "b", "ra", False, "ra", 0.875, "near", 3),
        ("rb2", "b", "ra", False, "ra", 0.875, "near", 4),
        ("rs", "s", "ra", False, "ra", 0.9, "semantic", 1),
    ]
    names = ["record_id", "content_hash", "cluster_id", "is_canonical", "duplicate_of"]
    names += ["similarity", "dup_kind", "day"]
    table = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    days = table.pop("day")
    return pa.table(
        {
            **table,
            "similarity": pa.array(table["similarity"], pa.float32()),
            "digest_date": [dt.date(2024, 3, d) for d in days],
            "source_file": [f"d{d}.txt" for d in days],
            "record_index": [0] * len(rows),
        }
    )


def test_a_later_copy_of_a_known_text_joins_with_the_role_of_that_text() -> None:
    new = [
        _record("n1", "b", 9),  # another copy of the near duplicate b
        _record("n2", "a", 9),  # a copy of the canonical's text
        _record("n3", "s", 9),  # a copy of the merged revision (a lexical canonical)
        _record("n4", "z", 9),  # an unknown text: the pipeline's
    ]
    joined = {j.record.record_id: j for j in joined_copies(new, _roles(), "earliest")}
    assert set(joined) == {"n1", "n2", "n3"}
    assert (joined["n1"].cluster_id, joined["n1"].duplicate_of) == ("ra", "ra")
    assert (joined["n1"].similarity, joined["n1"].dup_kind) == (0.875, "near")
    assert (joined["n2"].duplicate_of, joined["n2"].similarity, joined["n2"].dup_kind) == (
        "ra",
        1.0,
        "exact",
    )
    # a revision merged into ra: its copies are exact copies of it, in ra's cluster
    assert (joined["n3"].cluster_id, joined["n3"].duplicate_of) == ("ra", "rs")


def test_a_copy_that_would_become_canonical_is_clustered_again() -> None:
    early = [_record("n0", "b", 1)]  # dated before the canonical ra (day 2)
    assert joined_copies(early, _roles(), "earliest") == []
    late = [_record("n1", "b", 9)]
    assert joined_copies(late, _roles(), "latest") == []  # the newest copy takes over


def test_grown_cluster_and_joined_row() -> None:
    row = {
        "cluster_id": "ra",
        "canonical_record_id": "ra",
        "size": 3,
        "distinct_texts": 2,
        "first_digest_date": dt.date(2024, 3, 2),
        "last_digest_date": dt.date(2024, 3, 4),
    }
    grown = grown_cluster(row, [dt.date(2024, 3, 9), None])
    assert (grown["size"], grown["distinct_texts"]) == (5, 2)
    assert (grown["first_digest_date"], grown["last_digest_date"]) == (
        dt.date(2024, 3, 2),
        dt.date(2024, 3, 9),
    )
    copy = JoinedCopy(_record("n1", "b", 9), "ra", "ra", 0.875, "near", "rb")
    template = {"embedding": [1.0, 0.0], "tags": ["nlp"], "tag_scores": []}
    new_row = joined_row(copy, template)
    assert (new_row["record_id"], new_row["is_canonical"], new_row["embedding"]) == (
        "n1",
        False,
        [1.0, 0.0],
    )


def test_the_plan_round_trips_through_its_file() -> None:
    part = UpdatePart(
        cluster_ids=frozenset({"c1", "c2"}),
        record_ids=frozenset({"r1"}),
        content_hashes=frozenset({"h"}),
        skip_names=frozenset({"gans"}),
        joined=frozenset({"n1"}),
    )
    assert UpdatePart.from_json(part.to_json()) == part
    assert UpdatePart.from_json(UpdatePart.all().to_json()).everything
