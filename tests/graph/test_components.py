"""transforms.graph.components: star operations, union-find, and the Beam composite with fallback."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.graph.components import (
    ConnectedComponents,
    alternating_components,
    finish_labels,
    label_disagreements,
    large_star,
    small_star,
    star_rounds,
    tentative_labels,
    union_find_components,
)


def _pipeline() -> BeamTestPipeline:
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]), blocking=True)


def _counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace("components").with_name(name))
    return sum(c.committed for c in found["counters"])  # one result per step using the name


def _path(ids: list[str]) -> list[tuple[str, str]]:
    return list(zip(ids, ids[1:], strict=False))


def _shuffled_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


# --------------------------------------------------------------------------- star steps


def test_large_star_links_larger_neighbours_to_local_minimum():
    # 2 - 1 - 3 and 3 - 4: at 1 (min of {1,2,3}) -> 2-1, 3-1; at 3 (N={1,4}) -> 4-1.
    assert large_star([(2, 1), (1, 3), (3, 4)]) == {(2, 1), (3, 1), (4, 1)}


def test_small_star_links_smaller_neighbours_to_their_minimum():
    # node 5 with smaller neighbours {2, 3, 4}: 3-2, 4-2, 5-2.
    assert small_star([(5, 2), (5, 3), (4, 5)]) == {(3, 2), (4, 2), (5, 2)}
    assert small_star([(1, 2)]) == {(2, 1)}


def test_steps_ignore_self_loops_and_duplicates():
    assert large_star([(1, 1), (1, 2), (2, 1)]) == {(2, 1)}
    assert small_star([(3, 3), (3, 1), (1, 3)]) == {(3, 1)}


def test_rounds_reach_stars_on_the_minimum_and_then_stop_changing():
    ids = _shuffled_ids(300, seed=1)
    edges, changes = star_rounds(_path(ids), rounds=20)
    first_quiet = changes.index(0)
    assert all(c > 0 for c in changes[:first_quiet])
    assert all(c == 0 for c in changes[first_quiet:])
    smallest = min(ids)
    assert edges == {(node, smallest) for node in ids if node != smallest}


# ---------------------------------------------------------------------------- union-find

GRAPHS = {
    "chain": ([("c", "b"), ("b", "a"), ("d", "c")], {"a": "a", "b": "a", "c": "a", "d": "a"}),
    "star": ([("h", "x"), ("h", "y"), ("h", "z")], {"h": "h", "x": "h", "y": "h", "z": "h"}),
    "cycle": ([("b", "c"), ("c", "d"), ("d", "b")], {"b": "b", "c": "b", "d": "b"}),
    "disconnected": (
        [("q", "p"), ("m", "n"), ("z", "z")],
        {"p": "p", "q": "p", "m": "m", "n": "m", "z": "z"},
    ),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_small_graphs(name):
    edges, expected = GRAPHS[name]
    assert union_find_components(edges) == expected
    for rounds in range(4):
        assert alternating_components(edges, rounds) == expected


def test_union_find_is_order_independent():
    rng = random.Random(3)
    edges = [(rng.randrange(200), rng.randrange(200)) for _ in range(150)]
    labels = union_find_components(edges)
    for _ in range(5):
        rng.shuffle(edges)
        flipped = [(v, u) if rng.random() < 0.5 else (u, v) for u, v in edges]
        assert union_find_components(flipped) == labels
    for node, label in labels.items():
        assert label <= node
        assert labels[label] == label


def test_finish_labels_only_sends_disagreements_to_union_find():
    """A finished star contributes nothing; an unfinished path contributes its label pairs."""
    star = [("b", "a"), ("c", "a")]
    assert label_disagreements(star, tentative_labels(star)) == set()
    path = [("a", "b"), ("b", "c"), ("c", "d")]  # labels a, a, b, c
    assert label_disagreements(path, tentative_labels(path)) == {("a", "b"), ("b", "c")}
    assert finish_labels(star + [("y", "x")]) == {"a": "a", "b": "a", "c": "a", "x": "x", "y": "x"}


@settings(max_examples=200, deadline=None)
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40)).map(
            lambda e: (f"n{e[0]:02d}", f"n{e[1]:02d}")
        ),
        max_size=60,
    ),
    rounds=st.integers(0, 5),
)
def test_any_number_of_rounds_plus_finish_equals_union_find(edges, rounds):
    assert alternating_components(edges, rounds) == union_find_components(edges)


@settings(max_examples=50, deadline=None)
@given(edges=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=120))
def test_converged_rounds_leave_one_star_per_component(edges):
    left, changes = star_rounds(edges, rounds=40)
    assert changes[-1] == 0
    labels = union_find_components([(u, v) for u, v in edges if u != v])
    assert left == {(node, label) for node, label in labels.items() if node != label}


# ------------------------------------------------------------------------------------ Beam


def test_beam_small_graphs_and_self_loops():
    edges = [e for name in sorted(GRAPHS) for e in GRAPHS[name][0]]
    expected = union_find_components(edges)
    p = _pipeline()
    labels = p | beam.Create(edges) | ConnectedComponents(rounds=2)
    assert_that(labels, equal_to(sorted(expected.items())))
    result = p.run()
    assert _counter(result, "changed_edges_round_02") == 0  # converged: nothing left
    assert _counter(result, "fallback_edges") == 0


def test_beam_long_path_needs_the_union_find_fallback():
    """A 2000-node path in random id order needs 9 rounds; 8 leave a few label disagreements."""
    ids = _shuffled_ids(2000, seed=1)
    edges = _path(ids)
    left, changes = star_rounds(edges, rounds=8)
    leftover = label_disagreements(left, tentative_labels(left))
    assert leftover  # the fallback really has work to do

    p = _pipeline()
    labels = p | beam.Create(edges) | ConnectedComponents(rounds=8)
    assert_that(labels, equal_to([(node, min(ids)) for node in ids]))
    result = p.run()
    for i, changed in enumerate(changes, start=1):
        assert _counter(result, f"changed_edges_round_{i:02d}") == changed
    assert _counter(result, "fallback_edges") == len(leftover)


def test_beam_without_rounds_is_union_find_on_everything():
    rng = random.Random(5)
    nodes = [f"v{i:03d}" for i in range(300)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(250)]
    p = _pipeline()
    labels = p | beam.Create(edges) | ConnectedComponents(rounds=0)
    assert_that(labels, equal_to(sorted(union_find_components(edges).items())))
    p.run()


def test_rounds_must_not_be_negative():
    with pytest.raises(ValueError, match="rounds"):
        ConnectedComponents(rounds=-1)
