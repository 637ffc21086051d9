"""Deterministic generator of realistic synthetic digest dumps, with ground truth.

Why: the pipeline's deduplication quality and throughput need inputs whose true clusters are
known, at any size (1k to 1M records), without redistributing real abstracts. Real dumps are
only used as a *format* reference; all text here comes from :mod:`beam_jobs.synthetic.vocabulary`.

Design notes
------------
* **A paper is a pure function of ``(seed, paper index)``** (:func:`.papers.make_paper`). The
  generator only keeps a few integers per emitted paper (its index and where it first
  appeared), and regenerates a paper's text when a later record re-scrapes it (with a small LRU
  cache because re-scrapes favour recent papers). Papers are published in index order,
  skipping an index whose title an earlier paper already has (:func:`.papers.distinct_papers`:
  one 64-bit hash per paper), so no two distinct papers share a title. Memory stays small at
  1M records and files are streamed.
* **Record slots** are assigned a *variant* per file with exact cumulative quotas, so the
  counts of each variant match the configured rates up to rounding, at any corpus size.
* **Determinism**: every random choice comes from ``random.Random`` seeded with strings built
  from the seed; no set or hash ordering is involved; gzip headers carry no name or mtime. The
  same seed and config give byte-identical files in any process.

Variants of a record slot (``variant`` in ``ground_truth.jsonl``):

``original``
    First appearance of a new paper.
``exact``
    Verbatim re-scrape of an earlier paper.
near-duplicate classes (:data:`.perturbations.NEAR_DUP_CLASSES`), each a re-scrape of an earlier
paper whose word-3-shingle Jaccard (:func:`.similarity.shingle_jaccard`) to the original stays
>= 0.75:
    ``whitespace`` doubled spaces, tabs and trailing blanks inside the lines;
    ``case`` a few words or the whole title re-cased;
    ``html`` ``&amp;`` ``&#39;`` ``&quot;`` ``&#45;`` entities, ``&nbsp;`` / U+00A0, sometimes
    double-escaped;
    ``typo`` 1-3 character typos, each in a different word of the abstract;
    ``truncate`` abstract cut at 85-95 % of its length (possibly mid-word), never below 300 chars;
    ``append_link`` " Code is available at https://github.com/user/repo." appended (" Project
    page: https://....github.io/..." when the abstract already cites the repository);
    ``drop_sentence`` one sentence (preferably <= 15 % of the text) removed from >= 5;
    ``change_title`` the title reworded slightly (synonym, inserted/dropped word, suffix, swap),
    abstract unchanged.
``revision``
    A heavy rewrite ("arXiv v2"): same facts (method name, task, datasets...) but most
    sentences re-rendered and reordered; Jaccard to the original in [0.2, 0.5].
``missing_abstract``
    A malformed slot: the title of a fresh paper with no abstract line after it (the next line
    is another title, or the end of the file). Such papers are never re-scraped.

Modules, in dependency order:

* :mod:`.vocabulary` -- word lists and sentence frames (plain data);
* :mod:`.config` -- :class:`GeneratorConfig`, what to generate;
* :mod:`.papers` -- a paper from ``(seed, index)``: facts, title, abstract;
* :mod:`.similarity` -- the word-3-shingle Jaccard the variants are built to;
* :mod:`.perturbations` -- the near-duplicate classes and revisions;
* :mod:`.dumps` -- the page format: layouts, writing, file names, compression, reading back;
* :mod:`.generator` -- slot variants, the corpus state, :func:`generate`, the ground truth.
"""

from beam_jobs.synthetic.config import COMPRESSIONS, GeneratorConfig
from beam_jobs.synthetic.dumps import (
    COMPACT_HEADER,
    GLUED_PREFIX,
    SPACED_HEADER,
    UTF8_BOM,
    PageWriter,
    file_name,
    is_compact,
    open_dump,
    page_date,
    read_slots,
)
from beam_jobs.synthetic.generator import (
    GROUND_TRUTH_NAME,
    VARIANTS,
    GenerationSummary,
    generate,
    read_ground_truth,
)
from beam_jobs.synthetic.papers import (
    PAPER_TYPES,
    TOPICS,
    Paper,
    distinct_papers,
    make_paper,
    paper_id,
    paper_index,
)
from beam_jobs.synthetic.perturbations import (
    NEAR_DUP_CLASSES,
    PERTURBATIONS,
    change_title,
    revise,
    split_sentences,
)
from beam_jobs.synthetic.similarity import (
    jaccard,
    normalize,
    record_text,
    shingle_jaccard,
    shingles,
)

__all__ = [
    "COMPACT_HEADER",
    "COMPRESSIONS",
    "GLUED_PREFIX",
    "GROUND_TRUTH_NAME",
    "NEAR_DUP_CLASSES",
    "PAPER_TYPES",
    "PERTURBATIONS",
    "SPACED_HEADER",
    "TOPICS",
    "UTF8_BOM",
    "VARIANTS",
    "GenerationSummary",
    "GeneratorConfig",
    "PageWriter",
    "Paper",
    "change_title",
    "file_name",
    "generate",
    "is_compact",
    "jaccard",
    "distinct_papers",
    "make_paper",
    "normalize",
    "open_dump",
    "page_date",
    "paper_id",
    "paper_index",
    "read_ground_truth",
    "read_slots",
    "record_text",
    "revise",
    "shingle_jaccard",
    "shingles",
    "split_sentences",
]
