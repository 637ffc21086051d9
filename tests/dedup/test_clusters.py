"""transforms.dedup.clusters: canonical policies, exact vs near members, chain splitting, summaries."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.dedup.clusters import (
    EXACT,
    NEAR,
    Assignment,
    assign_clusters,
    canonical_sort_key,
    cluster_summaries,
    record_row,
)
from transforms.records import Record, make_record_id

D1, D2, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)


def rec(
    source: str,
    index: int,
    text: str = "A",
    date: dt.date | None = D1,
    abstract_len: int = 100,
) -> Record:
    """A record whose content_hash is ``text``: similarity functions key on it."""
    return Record(
        record_id=make_record_id(source, index),
        source_file=source,
        record_index=index,
        digest_date=date,
        title=f"title {text}",
        abstract="x" * abstract_len,
        content_hash=text,
        code_urls=(),
    )


def table(pairs: dict[tuple[str, str], float]):
    """A symmetric similarity function from a dict of scores (unknown pairs score 0)."""
    scores = {frozenset(k): v for k, v in pairs.items()}

    def similarity(a: str, b: str) -> float:
        assert a != b, "exact copies must not be scored"
        return scores.get(frozenset((a, b)), 0.0)

    return similarity


def canonical_of(assignments: list[Assignment]) -> Record:
    [canonical] = [a.record for a in assignments if a.is_canonical]
    return canonical


# --- policies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "winner"),
    [("earliest", "mid"), ("latest", "late"), ("longest", "long")],
)
def test_policies_pick_the_canonical(policy: str, winner: str) -> None:
    records = {
        "early": rec("b.txt", 0, date=D1, abstract_len=100),
        "mid": rec("a.txt", 5, date=D1, abstract_len=100),  # same date as early: file decides
        "late": rec("c.txt", 0, date=D3, abstract_len=100),
        "long": rec("d.txt", 0, date=D2, abstract_len=500),
        "undated": rec("0.txt", 0, date=None, abstract_len=100),
    }
    out = assign_clusters(records.values(), policy)
    assert canonical_of(out) == records[winner]
    assert len(out) == len(records)


@pytest.mark.parametrize(
    ("policy", "members", "winner"),
    [
        # ties on date: source_file, then record_index
        ("earliest", [("b.txt", 0, D1), ("a.txt", 9, D1), ("a.txt", 3, D1)], ("a.txt", 3)),
        ("latest", [("b.txt", 0, D3), ("a.txt", 9, D3), ("c.txt", 0, D1)], ("a.txt", 9)),
        # None dates sort last for both directions
        ("earliest", [("a.txt", 0, None), ("z.txt", 0, D3)], ("z.txt", 0)),
        ("latest", [("a.txt", 0, None), ("z.txt", 0, D1)], ("z.txt", 0)),
        ("earliest", [("b.txt", 0, None), ("a.txt", 1, None)], ("a.txt", 1)),
    ],
)
def test_policy_ties_and_missing_dates(policy, members, winner) -> None:
    out = assign_clusters([rec(s, i, date=d) for s, i, d in members], policy)
    canonical = canonical_of(out)
    assert (canonical.source_file, canonical.record_index) == winner


def test_longest_ties_break_as_earliest() -> None:
    members = [
        rec("b.txt", 0, date=D2, abstract_len=300),
        rec("a.txt", 0, date=D3, abstract_len=300),
        rec("c.txt", 0, date=None, abstract_len=300),
        rec("d.txt", 0, date=D1, abstract_len=299),
    ]
    assert canonical_of(assign_clusters(members, "longest")) == members[0]


def test_unknown_policy_raises() -> None:
    with pytest.raises(ValueError, match="unknown canonical policy 'newest'.*earliest"):
        assign_clusters([rec("a.txt", 0)], "newest")
    with pytest.raises(ValueError):
        assign_clusters([], "newest")
    with pytest.raises(ValueError):
        canonical_sort_key("")


# --- exact and near members ---------------------------------------------------------------


def test_exact_copies_join_with_similarity_one() -> None:
    members = [rec("a.txt", i, text="same", date=D1 + dt.timedelta(days=i)) for i in range(4)]
    out = assign_clusters(members, similarity=table({}), threshold=0.8)
    canonical = members[0]
    assert out[0] == Assignment(canonical, canonical.record_id, True)
    for a in out[1:]:
        assert (a.is_canonical, a.cluster_id, a.duplicate_of) == (
            False,
            canonical.record_id,
            canonical.record_id,
        )
        assert (a.similarity, a.dup_kind) == (1.0, EXACT)


def test_without_similarity_only_exact_copies_join() -> None:
    members = [rec("a.txt", 0, "A"), rec("a.txt", 1, "B"), rec("a.txt", 2, "A")]
    out = assign_clusters(members)
    assert sorted((a.record.record_index, a.cluster_id) for a in out) == [
        (0, members[0].record_id),
        (1, members[1].record_id),
        (2, members[0].record_id),
    ]
    assert [a.dup_kind for a in out if not a.is_canonical] == [EXACT]


def test_chain_is_split_so_every_member_is_close_to_its_canonical() -> None:
    a, b, c = rec("f.txt", 0, "A", D1), rec("f.txt", 1, "B", D2), rec("f.txt", 2, "C", D3)
    scores = {("A", "B"): 0.9, ("B", "C"): 0.9, ("A", "C"): 0.5}
    out = assign_clusters([c, a, b], "earliest", table(scores), threshold=0.8)
    by_record = {x.record.content_hash: x for x in out}
    assert by_record["A"].is_canonical
    assert (by_record["B"].cluster_id, by_record["B"].dup_kind) == (a.record_id, NEAR)
    assert by_record["B"].similarity == 0.9
    assert by_record["C"].is_canonical and by_record["C"].cluster_id == c.record_id
    assert len({x.cluster_id for x in out}) == 2
    # with 'latest', C leads and takes B; A is left alone
    out = assign_clusters([a, b, c], "latest", table(scores), threshold=0.8)
    clusters = {x.record.content_hash: x.cluster_id for x in out}
    assert clusters == {"C": c.record_id, "B": c.record_id, "A": a.record_id}


def test_near_member_scores_are_against_the_canonical_and_reused_for_copies() -> None:
    calls: list[tuple[str, str]] = []
    base = table({("A", "B"): 0.85, ("A", "C"): 0.79})

    def similarity(x: str, y: str) -> float:
        calls.append((x, y))
        return base(x, y)

    members = [
        rec("f.txt", 0, "A"),
        rec("f.txt", 1, "B"),
        rec("f.txt", 2, "B"),
        rec("f.txt", 3, "C"),
    ]
    out = assign_clusters(members, similarity=similarity, threshold=0.8)
    kinds = [(x.record.record_index, x.cluster_id, x.similarity, x.dup_kind) for x in out]
    a_id, c_id = members[0].record_id, members[3].record_id
    assert kinds == [
        (0, a_id, None, None),
        (1, a_id, 0.85, NEAR),
        (2, a_id, 0.85, NEAR),  # a copy of a near member is near to the canonical
        (3, c_id, None, None),  # 0.79 < 0.8: its own cluster
    ]
    assert calls == [("A", "B"), ("A", "C")]  # each distinct text scored once per canonical


def test_threshold_is_inclusive() -> None:
    members = [rec("f.txt", 0, "A"), rec("f.txt", 1, "B")]
    out = assign_clusters(members, similarity=table({("A", "B"): 0.8}), threshold=0.8)
    assert len({x.cluster_id for x in out}) == 1


@pytest.mark.parametrize("policy", ["earliest", "latest", "longest"])
def test_order_independence(policy: str) -> None:
    rng = random.Random(7)
    texts = "ABCDEFG"
    members = [
        rec(
            f"f{i % 3}.txt",
            i,
            rng.choice(texts),
            rng.choice([D1, D2, D3, None]),
            rng.randint(50, 60),
        )
        for i in range(40)
    ]
    scores = {(x, y): rng.random() for x in texts for y in texts if x < y}
    expected = assign_clusters(members, policy, table(scores), threshold=0.6)
    for _ in range(5):
        shuffled = members[:]
        rng.shuffle(shuffled)
        assert assign_clusters(shuffled, policy, table(scores), threshold=0.6) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABCDE"), st.sampled_from([D1, D2, D3, None]), st.integers(1, 4)),
        min_size=1,
        max_size=25,
    ),
    st.dictionaries(
        st.sampled_from([("A", "B"), ("A", "C"), ("B", "C"), ("C", "D"), ("D", "E"), ("A", "E")]),
        st.floats(0, 1),
    ),
    st.sampled_from(["earliest", "latest", "longest"]),
    st.floats(0.01, 1.0),
)
def test_cluster_invariants(specs, scores, policy, threshold) -> None:
    members = [rec(f"f{i % 2}.txt", i, t, d, n) for i, (t, d, n) in enumerate(specs)]
    similarity = table(scores)
    out = assign_clusters(members, policy, similarity, threshold)
    assert sorted(x.record.record_id for x in out) == sorted(r.record_id for r in members)
    canonicals = {x.cluster_id: x.record for x in out if x.is_canonical}
    for x in out:
        canonical = canonicals[x.cluster_id]  # every cluster has its canonical...
        if x.is_canonical:
            assert x.cluster_id == x.record.record_id and x.duplicate_of is None
            continue
        assert x.duplicate_of == x.cluster_id
        key = canonical_sort_key(policy)
        assert key(canonical) < key(x.record)  # ...which comes first by the policy
        if x.record.content_hash == canonical.content_hash:
            assert (x.similarity, x.dup_kind) == (1.0, EXACT)
        else:
            assert x.dup_kind == NEAR
            assert x.similarity == similarity(canonical.content_hash, x.record.content_hash)
            assert x.similarity >= threshold
    assert sum(x.is_canonical for x in out) == len({x.cluster_id for x in out})
    assert assign_clusters(list(reversed(members)), policy, similarity, threshold) == out


# --- summaries and rows -------------------------------------------------------------------


def test_cluster_summaries() -> None:
    members = [
        rec("a.txt", 0, "A", D2),
        rec("b.txt", 0, "A", D3),
        rec("c.txt", 0, "B", None),
        rec("d.txt", 0, "Z", None),
        rec("e.txt", 0, "Z", None),
    ]
    out = assign_clusters(members, "earliest", table({("A", "B"): 0.95}), threshold=0.9)
    rows = cluster_summaries(out)
    assert rows == sorted(rows, key=lambda r: r["cluster_id"])
    by_id = {r["cluster_id"]: r for r in rows}
    assert by_id[members[0].record_id] == {
        "cluster_id": members[0].record_id,
        "canonical_record_id": members[0].record_id,
        "size": 3,
        "distinct_texts": 2,
        "first_digest_date": D2,
        "last_digest_date": D3,
    }
    assert by_id[members[3].record_id] == {
        "cluster_id": members[3].record_id,
        "canonical_record_id": members[3].record_id,
        "size": 2,
        "distinct_texts": 1,
        "first_digest_date": None,
        "last_digest_date": None,
    }
    assert sum(r["size"] for r in rows) == len(members)
    assert cluster_summaries([]) == []


def test_record_row() -> None:
    canonical, copy = rec("a.txt", 0, "A"), rec("b.txt", 1, "A")
    out = assign_clusters([copy, canonical])
    row = record_row(out[1])
    assert row["record_id"] == copy.record_id
    assert (row["cluster_id"], row["is_canonical"], row["duplicate_of"]) == (
        canonical.record_id,
        False,
        canonical.record_id,
    )
    assert (row["similarity"], row["dup_kind"], row["code_urls"]) == (1.0, EXACT, [])
