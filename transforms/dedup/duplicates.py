"""Group records into clusters of copies of one paper, each with one canonical record.

Shape of the work (every GroupByKey's worst-case key size in brackets):

    records ─ KeyByText ─┬──────────────────────────────────────────┐
                         └ DistinctTexts [copies of one text]        │
                             ─ near duplicates: sign → LSH → verify → components
                               (see transforms.dedup.lsh / transforms.graph.components)
                         CandidateGroup per text ── JoinGroups [copies of one text]
                         GroupCandidates [records of one candidate group = one paper's copies]
                         AssignClusters (pure: transforms.dedup.clusters.assign_clusters)

Exact duplicates share a ``content_hash`` and are grouped before any MinHash work, so each
distinct text is signed once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import apache_beam as beam

from transforms.dedup.clusters import (
    assign_clusters,
    check_policy,
    cluster_summaries,
    record_row,
)
from transforms.dedup.lsh import (
    DEFAULT_SHARDS,
    LshCandidatePairs,
    SignTexts,
    TextBandRows,
    VerifiedSimilarPairs,
)
from transforms.dedup.minhash import MinHashConfig, MinHasher, estimated_jaccard
from transforms.graph.components import ConnectedComponents
from transforms.metrics import counter, distribution
from transforms.records import Record
from transforms.schema import LSH_BANDS_SCHEMA
from transforms.text import normalized_text

CLUSTERS = "clusters"
ROWS = "rows"
ALONE = "alone"
LINKED = "linked"


@dataclass(frozen=True)
class DedupConfig:
    """How records are grouped; validated before any graph is built."""

    canonical_policy: str = "earliest"
    near_duplicates: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    # Star each LSH bucket on its largest id too: recovers pairs a single star centre loses
    # when similarity does not carry through the centre (measured in tests/test_lsh.py).
    second_centre: bool = True
    component_rounds: int = 8
    # LSH buckets are formed in memory per shard (transforms.dedup.lsh._GroupBuckets); a shard
    # holds distinct texts x bands / lsh_shards entries.
    lsh_shards: int = DEFAULT_SHARDS

    def __post_init__(self) -> None:
        check_policy(self.canonical_policy)
        if self.lsh_shards < 1:
            raise ValueError(f"lsh_shards must be >= 1, got {self.lsh_shards}")
        if self.component_rounds < 0:
            raise ValueError(f"component_rounds must be >= 0, got {self.component_rounds}")

    @property
    def threshold(self) -> float:
        return self.minhash.threshold


def text_tokens(record: Record) -> list[str]:
    """The tokens a record's text is shingled from (title then abstract)."""
    return normalized_text(record.title, record.abstract).split()


class AssignClustersFn(beam.DoFn):
    """(group key, records) -> record rows (main) and cluster rows (tagged ``clusters``)."""

    def __init__(self, config: DedupConfig) -> None:
        self._config = config
        self._clusters = counter("clusters")
        self._rows = counter("rows_clustered")
        self._group_size = distribution("candidate_group_size")

    def setup(self) -> None:
        self._hasher = MinHasher(self._config.minhash) if self._config.near_duplicates else None

    def process(self, element: tuple[str, list[Record] | list[tuple[Record, bytes]]]) -> Iterator:
        _, members = element
        members, signatures = _members_and_signatures(members)
        self._group_size.update(len(members))
        similarity = self._similarity(members, signatures) if self._hasher is not None else None
        assignments = assign_clusters(
            members, self._config.canonical_policy, similarity, self._config.threshold
        )
        for summary in cluster_summaries(assignments):
            self._clusters.inc()
            yield beam.pvalue.TaggedOutput(CLUSTERS, summary)
        for assignment in assignments:
            self._rows.inc()
            yield record_row(assignment)

    def _similarity(self, members: list[Record], signatures: dict[str, bytes]):
        """Estimated Jaccard between the group's distinct texts: from the signatures the
        group arrived with (linked groups), else signed here once each."""
        texts = {m.content_hash: m for m in members}
        if len(texts) < 2:
            return None
        unsigned = sorted(set(texts) - set(signatures))
        if unsigned:
            fresh = self._hasher.signatures([text_tokens(texts[k]) for k in unsigned])
            signatures = {**signatures, **dict(zip(unsigned, fresh, strict=True))}
        return lambda a, b: estimated_jaccard(signatures[a], signatures[b])


def _members_and_signatures(
    members: Iterable[Record] | Iterable[tuple[Record, bytes]],
) -> tuple[list[Record], dict[str, bytes]]:
    """A candidate group's records, and the packed signatures of its texts when the group
    carries them (records of linked texts travel with their text's signature)."""
    records, signatures = [], {}
    for member in members:
        if isinstance(member, Record):
            records.append(member)
        else:
            record, signature = member
            records.append(record)
            signatures[record.content_hash] = signature
    return records, signatures


class Clustered(NamedTuple):
    """``rows``: records-table rows; ``clusters``: clusters-table rows; ``text_bands``: Arrow
    batches of ``lsh_bands`` rows (None without near-duplicate detection)."""

    rows: beam.PCollection
    clusters: beam.PCollection
    text_bands: beam.PCollection | None


class ClusterDuplicates(beam.PTransform):
    """Records -> :class:`Clustered` (records and clusters table rows, and the LSH index)."""

    def __init__(self, config: DedupConfig | None = None) -> None:
        super().__init__()
        self._config = config or DedupConfig()

    def expand(self, records: beam.PCollection) -> Clustered:
        by_text = records | "KeyByText" >> beam.Map(lambda r: (r.content_hash, r))
        text_bands = None
        if not self._config.near_duplicates:
            groups = by_text | "GroupCandidates" >> beam.GroupByKey()
        else:
            found = by_text | "NearDuplicateGroups" >> NearDuplicateGroups(self._config)
            # Only records of linked texts take a second shuffle; a text similar to no other
            # is already a complete candidate group after the label join.
            linked = found.linked | "GroupCandidates" >> beam.GroupByKey()
            groups = (found.alone, linked) | "AllCandidateGroups" >> beam.Flatten()
            text_bands = found.text_bands
        assigned = groups | "AssignClusters" >> beam.ParDo(
            AssignClustersFn(self._config)
        ).with_outputs(CLUSTERS, main=ROWS)
        return Clustered(assigned[ROWS], assigned[CLUSTERS], text_bands)


class NearDuplicates(NamedTuple):
    """See :class:`NearDuplicateGroups`."""

    alone: beam.PCollection
    linked: beam.PCollection
    text_bands: beam.PCollection


class NearDuplicateGroups(beam.PTransform):
    """(content_hash, record) -> :class:`NearDuplicates`: ``alone``: (content_hash, records)
    for texts similar to no other text (complete candidate groups), ``linked``: (component
    label, (record, packed signature of its text)) for the rest, to be grouped by label (the
    signatures ride along so the group's similarities need no second signing), and
    ``text_bands``: every distinct text's LSH band hashes (the ``lsh_bands`` table).

    Distinct texts are signed once, bucketed by LSH bands, candidate pairs verified against
    the threshold, and linked into connected components; the label is the smallest
    content_hash of a component.
    """

    def __init__(self, config: DedupConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, by_text: beam.PCollection) -> NearDuplicates:
        cfg = self._config
        signatures = (
            by_text
            | "TextOfHash"
            >> beam.Map(lambda kv: (kv[0], normalized_text(kv[1].title, kv[1].abstract)))
            | "DistinctTexts" >> beam.CombinePerKey(min)
            | "Tokenize" >> beam.MapTuple(lambda key, text: (key, text.split()))
            | "SignTexts" >> SignTexts(cfg.minhash)
        )
        candidates = signatures | "LshCandidatePairs" >> LshCandidatePairs.from_config(
            cfg.minhash, second_centre=cfg.second_centre, shards=cfg.lsh_shards
        )
        verified = (candidates, signatures) | "VerifiedSimilarPairs" >> VerifiedSimilarPairs(
            cfg.threshold, with_signatures=True
        )
        labels = (
            verified.edges
            | "Edges" >> beam.Map(lambda pair: (pair[0], pair[1]))
            | "ConnectedComponents" >> ConnectedComponents(rounds=cfg.component_rounds)
        )
        split = (
            {
                "records": by_text,
                "label": labels,
                # once per text: an end of many edges would bring its signature many times
                "signature": verified.linked_signatures
                | "OneSignatureEach" >> beam.CombinePerKey(_any_one),
            }
            | "JoinGroupLabels" >> beam.CoGroupByKey()
            | "SplitByLink" >> beam.FlatMap(_split_by_link).with_outputs(LINKED, main=ALONE)
        )
        text_bands = signatures | "TextBandRows" >> TextBandRows(
            *cfg.minhash.lsh_params, LSH_BANDS_SCHEMA
        )
        return NearDuplicates(split[ALONE], split[LINKED], text_bands)


def _any_one(values: Iterable[bytes]) -> bytes:
    return next(iter(values))


def _split_by_link(element) -> Iterator:
    content_hash, joined = element
    labels = list(joined["label"])
    if not labels:
        yield content_hash, list(joined["records"])
        return
    signature = next(iter(joined["signature"]))
    for record in joined["records"]:
        yield beam.pvalue.TaggedOutput(LINKED, (labels[0], (record, signature)))
