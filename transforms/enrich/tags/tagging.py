"""The Beam composite :class:`TagPapers`: embeds the taxonomy's prototype texts (and any tag
examples) once per pipeline in a side branch, or reads them from the cache of an earlier run
(:mod:`.cache`), builds the tag model from them, and tags every paper against it as a
singleton side input. The tagging itself is pure (:mod:`.scoring`)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np

from transforms.enrich.embed import EmbedConfig, EmbedTexts
from transforms.enrich.tags.cache import cache_file, load_vectors, store_vectors
from transforms.enrich.tags.head import build_tag_model, example_pairs
from transforms.enrich.tags.scoring import Prototypes, prototype_pairs, tag_paper
from transforms.enrich.tags.taxonomy import Taxonomy, load_taxonomy


class _TagDoFn(beam.DoFn):
    """Thin adapter over :func:`tag_paper`; prototypes arrive as a singleton side input."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self._taxonomy = taxonomy

    def process(self, element, prototypes: Prototypes):
        key, embedding, title, abstract, code_urls = element
        tags, scores = tag_paper(embedding, title, abstract, code_urls, self._taxonomy, prototypes)
        yield key, tags, scores


def _stacked(embedded: list[tuple[int, np.ndarray]], count: int, path: Path | None) -> np.ndarray:
    """The embedded texts as one array in text order, written to the cache when there is one
    (a text that failed has already failed the pipeline: see :func:`_prototype_failed`)."""
    if len(embedded) != count:
        raise RuntimeError(f"{len(embedded)} of {count} prototype texts embedded")
    vectors = np.stack([vector for _, vector in sorted(embedded, key=lambda kv: kv[0])])
    if path is not None:
        store_vectors(path, vectors)
    return vectors


def _tag_model(vectors: np.ndarray, keys: list, taxonomy: Taxonomy) -> Prototypes:
    return build_tag_model(zip(keys, vectors, strict=True), taxonomy)


def _prototype_failed(failure: tuple[str, str]) -> None:
    """A topic described by fewer texts than the taxonomy says would tag silently differently
    from the calibrated setup: stop the pipeline instead."""
    topic, message = failure
    raise RuntimeError(f"could not embed a prototype text or tag example {topic!r}: {message}")


class TagPapers(beam.PTransform):
    """(key, embedding, title, abstract, code_urls) -> (key, tags, [(topic, score)]).

    ``embed_config`` must be the one the papers were embedded with (same model): the
    prototypes are embedded here, once per pipeline, by a side branch through
    :class:`~transforms.enrich.embed.EmbedTexts`, then averaged into a singleton side input.
    """

    def __init__(
        self,
        taxonomy: Taxonomy | None = None,
        embed_config: EmbedConfig | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """``cache_dir``: where the prototype vectors are kept between runs
        (:mod:`.cache`); None embeds them in every pipeline (a Dataflow job: the launcher's
        disk is not the workers')."""
        super().__init__()
        self.taxonomy = taxonomy or load_taxonomy()
        self.embed_config = embed_config
        self.cache_dir = cache_dir

    def expand(self, papers: beam.PCollection) -> beam.PCollection:
        config = self.embed_config or EmbedConfig()
        pairs = prototype_pairs(self.taxonomy) + example_pairs(self.taxonomy.examples, config)
        texts = [text for _, text in pairs]
        path = cache_file(self.cache_dir, config, texts) if self.cache_dir else None
        cached = load_vectors(path, len(texts)) if path else None
        if cached is not None:
            vectors = papers.pipeline | "CachedPrototypes" >> beam.Create([cached])
        else:
            # Keyed by position: several texts share a topic, and the cache stores them in order.
            embedded, failed = (
                papers.pipeline
                | "PrototypeTexts" >> beam.Create(list(enumerate(texts)))
                | "EmbedPrototypes" >> EmbedTexts(config)
            )
            _ = failed | "FailOnPrototypeFailure" >> beam.Map(_prototype_failed)
            vectors = (
                embedded
                | "CollectPrototypes" >> beam.combiners.ToList()
                | "StackPrototypes" >> beam.Map(_stacked, len(texts), path)
            )
        keys = [key for key, _ in pairs]
        prototypes = vectors | "BuildPrototypes" >> beam.Map(_tag_model, keys, self.taxonomy)
        return papers | "Tag" >> beam.ParDo(
            _TagDoFn(self.taxonomy), prototypes=beam.pvalue.AsSingleton(prototypes)
        )
