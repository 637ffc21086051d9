"""The Beam composite :class:`TagPapers`: embeds the taxonomy's prototype texts (and any tag
examples) once per pipeline in a side branch, builds the tag model from them, and tags every
paper against it as a singleton side input. The tagging itself is pure (:mod:`.scoring`)."""

from __future__ import annotations

import apache_beam as beam

from transforms.enrich.embed import EmbedConfig, EmbedTexts
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
        self, taxonomy: Taxonomy | None = None, embed_config: EmbedConfig | None = None
    ) -> None:
        super().__init__()
        self.taxonomy = taxonomy or load_taxonomy()
        self.embed_config = embed_config

    def expand(self, papers: beam.PCollection) -> beam.PCollection:
        config = self.embed_config or EmbedConfig()
        texts = prototype_pairs(self.taxonomy) + example_pairs(self.taxonomy.examples, config)
        embedded, failed = (
            papers.pipeline
            | "PrototypeTexts" >> beam.Create(texts)
            | "EmbedPrototypes" >> EmbedTexts(config)
        )
        _ = failed | "FailOnPrototypeFailure" >> beam.Map(_prototype_failed)
        prototypes = (
            embedded
            | "CollectPrototypes" >> beam.combiners.ToList()
            | "BuildPrototypes" >> beam.Map(build_tag_model, self.taxonomy)
        )
        return papers | "Tag" >> beam.ParDo(
            _TagDoFn(self.taxonomy), prototypes=beam.pvalue.AsSingleton(prototypes)
        )
