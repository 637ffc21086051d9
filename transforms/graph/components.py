"""Connected components of the similar-pairs graph: label every node with its component's
smallest node id.

The Beam composite unrolls a fixed number of rounds of the *alternating* algorithm of
Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014): each round is one
large-star and one small-star step, i.e. two GroupByKeys. Edges are kept oriented as
``(larger, smaller)``; each step only rewires edges towards smaller ids and never disconnects a
component, so it converges to one star per component centred on its smallest id.

Why a fixed number of rounds plus a fallback: a Beam graph is static, so it cannot loop until
convergence. After ``rounds`` rounds a cheap check finds the edges whose endpoints still
disagree on their tentative label (``min`` of the closed neighbourhood). Only those
disagreements, contracted to label-to-label edges, go to an in-memory union-find; a component
without any disagreement is provably labelled correctly already (see :func:`finish_labels`).

Convergence, for choosing ``rounds``:
- A component whose smallest id is adjacent to every other node (a clique, or the star of a
  single LSH bucket) is a star after the first large-star: done in 1 round.
- The paper proves O(log^2 n) rounds for the alternating algorithm and observes ~log n in
  practice. Measured (``star_rounds``): a path of 2000 randomly ordered ids, the worst shape
  for label propagation (diameter 1999), is done after 9 rounds; the label disagreements left
  for union-find roughly halve each round (1002 before any round, 172 after 3, 2 after 8).
  Paths of 100k ids take 13 rounds; random sparse graphs of 2k-20k nodes take 5.
- Counters: ``changed_edges_round_NN`` (edges rewired in round NN; 0 means the previous round
  had already converged), ``edges_after_round_NN``, and ``fallback_edges`` (label pairs
  union-find had to finish; 0 means the rounds converged).

Worst-case key size of every GroupByKey here is one node's degree. Stars concentrate degree on
their centre, so the centre of a component of size s receives s - 1 values: component size
bounds the hottest key (the components here are clusters of copies of one paper).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsDict

from transforms.metrics import COMPONENTS_NAMESPACE, counter

Edge = tuple[Any, Any]


# ------------------------------------------------------------------------------- reducers


def large_star_reduce(node: Any, neighbours: Iterable[Any]) -> tuple[list[Edge], int]:
    """Large-star at ``node``: connect every strictly larger neighbour to min(N(node) + node).

    Returns (edges oriented (larger, smaller), number of those edges that are new, i.e. not
    the input edge (neighbour, node)).
    """
    neighbours = set(neighbours)
    neighbours.discard(node)
    if not neighbours:
        return [], 0
    centre = min(min(neighbours), node)
    edges = [(v, centre) for v in neighbours if v > node]
    changed = len(edges) if centre != node else 0
    return edges, changed


def small_star_reduce(node: Any, smaller: Iterable[Any]) -> tuple[list[Edge], int]:
    """Small-star at ``node``: connect node and its smaller neighbours to the smallest of them.

    Returns (edges oriented (larger, smaller), number of new edges). Only the edge to the
    smallest neighbour survives unchanged; the others are rewired.
    """
    smaller = set(smaller)
    smaller.discard(node)
    if not smaller:
        return [], 0
    centre = min(smaller)
    edges = [(v, centre) for v in smaller if v != centre]
    edges.append((node, centre))
    return edges, len(smaller) - 1


def _oriented(edges: Iterable[Edge]) -> Iterator[Edge]:
    """(larger, smaller) for every non-loop edge."""
    for u, v in edges:
        if u != v:
            yield (u, v) if u > v else (v, u)


def large_star(edges: Iterable[Edge]) -> set[Edge]:
    """One large-star step over a whole (undirected) edge list, in memory."""
    adjacency: dict[Any, set[Any]] = defaultdict(set)
    for u, v in _oriented(edges):
        adjacency[u].add(v)
        adjacency[v].add(u)
    return {e for node, nbrs in adjacency.items() for e in large_star_reduce(node, nbrs)[0]}


def small_star(edges: Iterable[Edge]) -> set[Edge]:
    """One small-star step over a whole (undirected) edge list, in memory."""
    smaller: dict[Any, set[Any]] = defaultdict(set)
    for u, v in _oriented(edges):
        smaller[u].add(v)
    return {e for node, lows in smaller.items() for e in small_star_reduce(node, lows)[0]}


def star_rounds(edges: Iterable[Edge], rounds: int) -> tuple[set[Edge], list[int]]:
    """``rounds`` alternating rounds in memory: (edges left, changed edges per round)."""
    current = set(_oriented(edges))
    changes = []
    for _ in range(rounds):
        adjacency: dict[Any, set[Any]] = defaultdict(set)
        for u, v in current:
            adjacency[u].add(v)
            adjacency[v].add(u)
        after_large: set[Edge] = set()
        changed = 0
        for node, nbrs in adjacency.items():
            out, n = large_star_reduce(node, nbrs)
            after_large.update(out)
            changed += n
        smaller: dict[Any, set[Any]] = defaultdict(set)
        for u, v in after_large:
            smaller[u].add(v)
        current = set()
        for node, lows in smaller.items():
            out, n = small_star_reduce(node, lows)
            current.update(out)
            changed += n
        changes.append(changed)
    return current, changes


# ---------------------------------------------------------------------------- union-find


def union_find_components(edges: Iterable[Edge]) -> dict[Any, Any]:
    """Every node of ``edges`` -> smallest node of its component (self-loops count as nodes).

    Union by minimum keeps each root the smallest id of its set, so the result does not
    depend on edge order.
    """
    parent: dict[Any, Any] = {}

    def find(x: Any) -> Any:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = find(u), find(v)
        if ru != rv:
            if ru < rv:
                parent[rv] = ru
            else:
                parent[ru] = rv
    return {node: find(node) for node in parent}


# --------------------------------------------------------------------------- finishing up


def tentative_labels(edges: Iterable[Edge]) -> dict[Any, Any]:
    """node -> min of its closed neighbourhood: the final label once the graph is all stars."""
    labels: dict[Any, Any] = {}
    for u, v in edges:
        low = min(u, v)
        labels[u] = min(labels.get(u, u), low)
        labels[v] = min(labels.get(v, v), low)
    return labels


def label_disagreements(edges: Iterable[Edge], labels: dict[Any, Any]) -> set[Edge]:
    """(smaller, larger) label pairs of edges whose endpoints have different tentative labels."""
    out = set()
    for u, v in edges:
        a, b = labels[u], labels[v]
        if a != b:
            out.add((a, b) if a < b else (b, a))
    return out


def finish_labels(edges: Iterable[Edge]) -> dict[Any, Any]:
    """Exact component labels from a partially converged edge list.

    Why it is exact: every node u is connected to its tentative label L(u) (a neighbour or
    itself), and each edge (u, v) connects L(u) to L(v); so the graph with edges u-L(u) and
    L(u)-L(v) has the same components as the input. Union-find over the *disagreeing* label
    pairs only is enough: a component without disagreements has a single label, which is
    L(min) = min. Everything the alternating rounds already finished costs nothing here.
    """
    edges = list(edges)
    labels = tentative_labels(edges)
    remap = union_find_components(label_disagreements(edges, labels))
    return {node: remap.get(label, label) for node, label in labels.items()}


def alternating_components(edges: Iterable[Edge], rounds: int = 8) -> dict[Any, Any]:
    """In-memory twin of :class:`ConnectedComponents` (same reducers, same finishing step)."""
    edges = list(edges)
    left, _ = star_rounds(edges, rounds)
    labels = finish_labels(left)
    for u, v in edges:  # nodes whose only edges were self-loops
        if u == v:
            labels.setdefault(u, u)
    return labels


# ------------------------------------------------------------------------------------ Beam


class _LargeStar(beam.DoFn):
    def __init__(self, round_index: int) -> None:
        self._changed = counter(f"changed_edges_round_{round_index:02d}", COMPONENTS_NAMESPACE)

    def process(self, element: tuple[Any, Iterable[Any]]) -> Iterator[Edge]:
        edges, changed = large_star_reduce(*element)
        self._changed.inc(changed)
        yield from edges


class _SmallStar(beam.DoFn):
    def __init__(self, round_index: int) -> None:
        self._changed = counter(f"changed_edges_round_{round_index:02d}", COMPONENTS_NAMESPACE)
        self._edges = counter(f"edges_after_round_{round_index:02d}", COMPONENTS_NAMESPACE)

    def process(self, element: tuple[Any, Iterable[Any]]) -> Iterator[Edge]:
        edges, changed = small_star_reduce(*element)
        self._changed.inc(changed)
        self._edges.inc(len(edges))
        yield from edges


_SELF = 0  # tags of the messages grouped by node in the finishing step
_NEIGHBOUR = 1
_UNSTABLE = "unstable"


def _both_directions(edge: Edge) -> Iterator[Edge]:
    u, v = edge
    yield u, v
    if u != v:
        yield v, u


def _share_label(element: tuple[Any, Iterable[Any]]) -> Iterator[tuple[Any, tuple[int, Any]]]:
    """Tell a node its tentative label, and each neighbour that label."""
    node, neighbours = element
    neighbours = set(neighbours)
    label = min(min(neighbours), node)
    yield node, (_SELF, label)
    for v in neighbours:
        if v != node:
            yield v, (_NEIGHBOUR, label)


class _CompareLabels(beam.DoFn):
    """Emit (node, tentative label); on the side, label pairs that still disagree."""

    def process(self, element: tuple[Any, Iterable[tuple[int, Any]]]):
        node, messages = element
        own, heard = None, set()
        for tag, label in messages:
            if tag == _SELF:
                own = label
            else:
                heard.add(label)
        yield node, own
        for label in heard:
            if label != own:
                pair = (label, own) if label < own else (own, label)
                yield beam.pvalue.TaggedOutput(_UNSTABLE, pair)


def _union_find_remap(label_edges: list[Edge]) -> Iterator[tuple[Any, Any]]:
    for label, root in union_find_components(label_edges).items():
        if label != root:
            yield label, root


class ConnectedComponents(beam.PTransform):
    """(u, v) edges -> (node, smallest node id of its component) for every node with an edge.

    ``rounds`` large-star/small-star rounds (2 GroupByKeys each), then an exact finish: two
    more GroupByKeys by node and a union-find over the leftover label disagreements only,
    broadcast as a side input (empty when the rounds converged; see the module docstring for
    how many rounds which graphs need). Self-loops are allowed: a node whose only edge is a
    self-loop is its own component.
    """

    def __init__(self, rounds: int = 8, label: str | None = None) -> None:
        super().__init__(label)
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        self.rounds = rounds

    def expand(self, edges):
        loops = edges | "SelfLoops" >> beam.Filter(lambda e: e[0] == e[1])
        current = edges | "Orient" >> beam.FlatMap(_oriented_one)
        for i in range(1, self.rounds + 1):
            current = (
                current
                | f"LargeStarEmit{i}" >> beam.FlatMap(_both_directions)
                | f"LargeStarGroup{i}" >> beam.GroupByKey()
                | f"LargeStar{i}" >> beam.ParDo(_LargeStar(i))
                | f"SmallStarGroup{i}" >> beam.GroupByKey()
                | f"SmallStar{i}" >> beam.ParDo(_SmallStar(i))
            )
        compared = (
            (current | "FinalEdges" >> beam.FlatMap(_both_directions), loops)
            | "WithSelfLoops" >> beam.Flatten()
            | "GroupNeighbours" >> beam.GroupByKey()
            | "ShareLabels" >> beam.FlatMap(_share_label)
            | "GroupLabels" >> beam.GroupByKey()
            | "CompareLabels" >> beam.ParDo(_CompareLabels()).with_outputs(_UNSTABLE, main="labels")
        )
        remap = (
            compared[_UNSTABLE]
            | "DistinctDisagreements" >> beam.Distinct()
            | "CountFallback" >> beam.ParDo(_CountFallback())
            | "CollectDisagreements" >> beam.combiners.ToList()
            | "UnionFind" >> beam.FlatMap(_union_find_remap)
        )
        return compared["labels"] | "Relabel" >> beam.Map(_relabel, remap=AsDict(remap))


def _oriented_one(edge: Edge) -> Iterator[Edge]:
    return _oriented([edge])


def _relabel(node_label: tuple[Any, Any], remap: dict[Any, Any]) -> tuple[Any, Any]:
    node, label = node_label
    return node, remap.get(label, label)


class _CountFallback(beam.DoFn):
    def __init__(self) -> None:
        self._edges = counter("fallback_edges", COMPONENTS_NAMESPACE)

    def process(self, edge: Edge) -> Iterator[Edge]:
        self._edges.inc()
        yield edge
