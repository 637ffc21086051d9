"""Topic and paper-type tags for embedded papers.

Topics are zero-shot: a paper is compared (cosine) with the embedded description and example
phrases of each topic in ``taxonomy.toml`` (its prototype texts), after removing the mean of
all prototype texts; the score is the mean cosine with the topic's nearest texts (see
:func:`~transforms.enrich.tags.scoring.tag_scores` for why not one mean prototype). No
classifier is trained, so adding a topic is a TOML edit, and a labelled set only calibrates
three numbers (threshold, margin, cap). Optionally, labelled examples (``--tag_examples``)
train a linear head whose output is added to those scores (how much that gains:
docs/benchmarks.md). Paper types (``survey``, ``benchmark``, ``has-code``) are
regular-expression rules over title, abstract and links: they are about the *form* of a paper,
which embeddings capture poorly.

Modules, in dependency order:

* :mod:`.taxonomy` -- the taxonomy file and the tag-examples file, parsed into plain data;
* :mod:`.scoring` -- prototypes, zero-shot scores, scores to topics, paper-type rules, and
  :func:`~.scoring.tag_paper` for one paper;
* :mod:`.calibration` -- micro-F1 against labels and the search for the assignment numbers;
* :mod:`.head` -- the few-shot head and :func:`~.head.build_tag_model` (prototypes + head);
* :mod:`.tagging` -- the Beam composite :class:`~.tagging.TagPapers`, the only Beam code;
* :mod:`.evaluation` -- labelled sets and cross-validation, for benchmarks and tests only (not
  re-exported here, so the pipeline never loads it).

Everything but :class:`TagPapers` is pure (numpy in, Python out) and unit-tested without Beam;
the prototypes are embedded once per pipeline in a small side-input branch that reuses
:class:`transforms.enrich.embed.EmbedTexts`, so they come from the very model that embeds the
papers.
"""

from transforms.enrich.tags.head import TagHead, build_tag_model
from transforms.enrich.tags.scoring import Prototypes, paper_type_tags, tag_paper, tag_scores
from transforms.enrich.tags.tagging import TagPapers
from transforms.enrich.tags.taxonomy import (
    DEFAULT_TAXONOMY,
    PAPER_TYPES,
    Assignment,
    PaperTypeRules,
    Scoring,
    TagExample,
    Taxonomy,
    TaxonomyError,
    Topic,
    load_tag_examples,
    load_taxonomy,
    parse_tag_examples,
    parse_taxonomy,
)

__all__ = [
    "DEFAULT_TAXONOMY",
    "PAPER_TYPES",
    "Assignment",
    "PaperTypeRules",
    "Prototypes",
    "Scoring",
    "TagExample",
    "TagHead",
    "TagPapers",
    "Taxonomy",
    "TaxonomyError",
    "Topic",
    "build_tag_model",
    "load_tag_examples",
    "load_taxonomy",
    "paper_type_tags",
    "parse_tag_examples",
    "parse_taxonomy",
    "tag_paper",
    "tag_scores",
]
