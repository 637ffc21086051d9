"""Deterministic generator of realistic synthetic digest dumps, with ground truth.

Why: the pipeline's deduplication quality and throughput need inputs whose true clusters are
known, at any size (1k to 1M records), without redistributing real abstracts. Real dumps are
only used as a *format* reference; all text here comes from :mod:`beam_jobs.vocabulary`.

Design notes
------------
* **A paper is a pure function of ``(seed, paper index)``** (:func:`make_paper`). The generator
  only keeps a few integers per emitted paper (its index and where it first appeared), and
  regenerates a paper's text when a later record re-scrapes it (with a small LRU cache because
  re-scrapes favour recent papers). Memory stays small at 1M records and files are streamed.
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
near-duplicate classes (:data:`NEAR_DUP_CLASSES`), each a re-scrape of an earlier paper whose
word-3-shingle Jaccard (:func:`shingle_jaccard`) to the original stays >= 0.75:
    ``whitespace`` doubled spaces, tabs and trailing blanks inside the lines;
    ``case`` a few words or the whole title re-cased;
    ``html`` ``&amp;`` ``&#39;`` ``&quot;`` ``&#45;`` entities, ``&nbsp;`` / U+00A0, sometimes
    double-escaped;
    ``typo`` 1-3 character typos, each in a different word of the abstract;
    ``truncate`` abstract cut at 85-95 % of its length (possibly mid-word), never below 300 chars;
    ``append_link`` " Code is available at https://github.com/user/repo." appended;
    ``drop_sentence`` one sentence (preferably <= 15 % of the text) removed from >= 5;
    ``change_title`` the title reworded slightly (synonym, inserted/dropped word, suffix, swap),
    abstract unchanged.
``revision``
    A heavy rewrite ("arXiv v2"): same facts (method name, task, datasets...) but most
    sentences re-rendered and reordered; Jaccard to the original in [0.2, 0.5].
``missing_abstract``
    A malformed slot: the title of a fresh paper with no abstract line after it (the next line
    is another title, or the end of the file). Such papers are never re-scraped.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import html
import json
import math
import random
import re
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from beam_jobs import vocabulary as V

NEAR_DUP_CLASSES: tuple[str, ...] = (
    "whitespace",
    "case",
    "html",
    "typo",
    "truncate",
    "append_link",
    "drop_sentence",
    "change_title",
)
TOPICS: tuple[str, ...] = tuple(V.TOPIC_VOCAB)
PAPER_TYPES: tuple[str, ...] = ("method", "survey", "benchmark")
VARIANTS: tuple[str, ...] = (
    ("original", "exact") + NEAR_DUP_CLASSES + ("revision", "missing_abstract")
)
COMPRESSIONS: tuple[str | None, ...] = (None, "gz", "bz2", "mixed")

# Header lines exactly as in the two real layouts.
SPACED_HEADER: tuple[str, ...] = (
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "byAK and the research community",
)
COMPACT_HEADER: tuple[str, ...] = (
    "Get trending papers in your email inbox once a day!",
    "Get trending papers in your email inbox!",
)
GLUED_PREFIX = "Subscribe"
UTF8_BOM = b"\xef\xbb\xbf"
GROUND_TRUTH_NAME = "ground_truth.jsonl"

# Shape limits the generated text respects (real dumps: titles <= ~175 chars, abstracts
# >= ~480 chars); the reference reader below splits titles from abstracts at 250 chars.
TITLE_MAX_CHARS = 200
TITLE_MIN_WORDS, TITLE_MAX_WORDS = 3, 25
ABSTRACT_MIN_CHARS, ABSTRACT_MAX_CHARS = 450, 2000
TRUNCATE_MIN_CHARS = 300
SHAPE_SPLIT_CHARS = 250

# Revision target band for the word-3-shingle Jaccard to the original (accepted: 0.2-0.5).
REVISION_LOW, REVISION_HIGH = 0.25, 0.45
# Re-scrapes favour recent papers, as daily digests do: this share is drawn with an
# exponential look-back of about one page of records, the rest uniformly from all earlier papers.
_RECENT_SHARE = 0.7
_CACHE_PAPERS = 4096


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Rates are fractions of *record slots* (they must sum to <= 0.95)."""

    records: int = 2000
    seed: int = 0
    records_per_file: int = 200
    exact_dup_rate: float = 0.15
    near_dup_rate: float = 0.15
    revision_rate: float = 0.0
    malformed_rate: float = 0.0
    compact_layout_share: float = 0.5
    compress: str | None = None
    start_date: dt.date = dt.date(2024, 3, 1)

    def __post_init__(self) -> None:
        if self.records < 1:
            raise ValueError(f"records must be >= 1, got {self.records}")
        if self.records_per_file < 1:
            raise ValueError(f"records_per_file must be >= 1, got {self.records_per_file}")
        for name in ("exact_dup_rate", "near_dup_rate", "revision_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        total = self.exact_dup_rate + self.near_dup_rate + self.revision_rate + self.malformed_rate
        if total > 0.95:
            raise ValueError(f"duplicate + revision + malformed rates sum to {total:.3f} > 0.95")
        if not 0.0 <= self.compact_layout_share <= 1.0:
            raise ValueError(
                f"compact_layout_share must be in [0, 1], got {self.compact_layout_share}"
            )
        if self.compress not in COMPRESSIONS:
            raise ValueError(f"compress must be one of {COMPRESSIONS}, got {self.compress!r}")

    @property
    def files(self) -> int:
        return math.ceil(self.records / self.records_per_file)


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote. ``distinct_papers`` counts papers with a complete record."""

    files: list[str]
    records: int
    distinct_papers: int
    malformed: int
    ground_truth: str


@dataclass(frozen=True)
class Paper:
    """One synthetic paper, as first published. ``facts`` drive title, abstract and revisions."""

    index: int
    title: str
    abstract: str
    topics: tuple[str, ...]
    paper_type: str
    has_code: bool
    facts: dict[str, str] = field(compare=False, repr=False)

    @property
    def paper_id(self) -> str:
        return paper_id(self.index)


def paper_id(index: int) -> str:
    return f"p{index:06d}"


def paper_index(pid: str | int) -> int:
    return pid if isinstance(pid, int) else int(pid.lstrip("p"))


def _pick(rng: random.Random, pool: Sequence[str]) -> str:
    """``rng.choice`` without ``_randbelow``: about 3x faster, and this is the hot path."""
    return pool[int(rng.random() * len(pool))]


def _sample(rng: random.Random, pool: Sequence[str], k: int) -> list[str]:
    """``rng.sample`` for the small k used here (distinct items, in draw order), but faster."""
    n = len(pool)
    if k <= 1:
        return [pool[int(rng.random() * n)]] if k == 1 else []
    k = min(k, n)
    chosen: list[int] = []
    while len(chosen) < k:
        i = int(rng.random() * n)
        if i not in chosen:
            chosen.append(i)
    return [pool[i] for i in chosen]


# ============================================================================================
# Text rendering
# ============================================================================================


class _Ctx(dict):
    """Format-map context: facts are plain keys, phrase pools are drawn on every lookup.

    ``str.format_map`` calls ``__missing__`` for any placeholder that is not a fact, which
    keeps the per-placeholder cost at one Python call (the generator must reach ~10k
    records/s).
    """

    def __init__(self, facts: dict[str, str], rng: random.Random) -> None:
        super().__init__(facts)
        self.rand = rng.random
        self.rng = rng

    def pick(self, pool: Sequence[str]) -> str:
        return pool[int(self.rand() * len(pool))]

    def __missing__(self, key: str) -> str:
        pool = V.PHRASES.get(key)
        if pool is not None:
            value = pool[int(self.rand() * len(pool))]
        else:
            maker = _DYNAMIC.get(key)
            if maker is None:
                raise KeyError(key)
            value = maker(self)
        if "{" in value:
            value = value.format_map(self)
        return value


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    return verb + "s"


def _gerund(verb: str) -> str:
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    return verb + "ing"


def _mechanism(ctx: _Ctx, form: Callable[[str], str] | None) -> str:
    text = ctx.pick(V.MECHANISMS).format_map(ctx)
    if form is None:
        return text
    verb, _, rest = text.partition(" ")
    return f"{form(verb)} {rest}"


def _pct(ctx: _Ctx) -> str:
    return f"{ctx.rng.uniform(1.2, 38.0):.1f}%"


def _gain(ctx: _Ctx) -> str:
    x = ctx.rng.uniform(0.3, 14.0)
    return ctx.pick((f"{x:.1f} points", f"{x:.1f}%", f"{x:.2f} points", f"{x:.1f} absolute points"))


def _factor(ctx: _Ctx) -> str:
    r = ctx.rand()
    if r < 0.5:
        return f"{ctx.rng.uniform(1.3, 9.8):.1f}x"
    if r < 0.85:
        return f"{ctx.rng.randint(2, 16)}x"
    return "an order of magnitude"


def _n_items(ctx: _Ctx) -> str:
    r = ctx.rand()
    if r < 0.4:
        return f"{ctx.rng.randint(1, 98)},{ctx.rng.randint(0, 999):03d}"
    if r < 0.7:
        return str(ctx.rng.randint(300, 999))
    return f"{ctx.rng.randint(2, 40)}K"


def _n_params(ctx: _Ctx) -> str:
    if ctx.rand() < 0.5:
        return f"{ctx.rng.uniform(0.1, 70.0):.1f}B"
    return f"{ctx.rng.randint(12, 950)}M"


def _rate(ctx: _Ctx) -> str:
    return ctx.pick(
        ("O(1/T)", "O(1/sqrt(T))", "O(log T / T)", "O(T^(-2/3))", "O(d/n)", "O(sqrt(d/n))")
    )


_DYNAMIC: dict[str, Callable[[_Ctx], str]] = {
    "mech_s": lambda c: _mechanism(c, _third_person),
    "mech_base": lambda c: _mechanism(c, None),
    "mech_ing": lambda c: _mechanism(c, _gerund),
    "pct": _pct,
    "gain": _gain,
    "val": lambda c: f"{c.rng.uniform(3.0, 96.0):.1f}",
    "val2": lambda c: f"{c.rng.uniform(3.0, 96.0):.1f}",
    "factor": _factor,
    "n_small": lambda c: c.pick(("two", "three", "four", "a few", "a handful of")),
    "n_tasks": lambda c: str(c.rng.randint(4, 48)),
    "n_items": _n_items,
    "n_models": lambda c: str(c.rng.randint(6, 64)),
    "n_papers": lambda c: c.pick(
        (f"more than {c.rng.randint(12, 90) * 10}", str(c.rng.randint(120, 950)))
    ),
    "n_years": lambda c: c.pick(("two", "three", "four", "five", "ten", "few")),
    "n_cats": lambda c: str(c.rng.randint(5, 64)),
    "rate": _rate,
    "frac": lambda c: c.pick(
        ("a third", "a quarter", "half", "one tenth", f"{c.rng.randint(5, 60)}%")
    ),
    "n_params": _n_params,
    "quote_term": lambda c: f"{c.pick(V.QUOTE_HEADS)} {c.pick(V.QUOTE_TAILS)}",
}

# "a" before a vowel sound -> "an" (lowercase words, and acronyms read letter by letter).
_ARTICLE = re.compile(r"\b([Aa]) (?=[aei]|o(?!ne\b)|u(?!ni|s)|[AEFHILMNORSX][A-Z0-9]+\b)")


def _render(frame: str, ctx: _Ctx) -> str:
    """Fill a frame and capitalize its first letter (articles are fixed per abstract)."""
    text = frame.format_map(ctx)
    first = text[0]
    if "a" <= first <= "z":
        text = first.upper() + text[1:]
    return text


def _fix_articles(sentences: list[str]) -> list[str]:
    """One regex pass over the whole abstract is much cheaper than one per sentence."""
    return _ARTICLE.sub(r"\1n ", "\x00".join(sentences)).split("\x00")


def title_case(text: str) -> str:
    """Headline case without lowering anything, so invented names (``KorvexFlow``) survive."""
    out = []
    start = True
    for word in text.split(" "):
        parts = word.split("-")
        for j, part in enumerate(parts):
            if not part or not ("a" <= part[0] <= "z"):
                continue
            if (start and j == 0) or part not in V.TITLE_SMALL_WORDS:
                parts[j] = part[0].upper() + part[1:]
        out.append("-".join(parts))
        start = word.endswith((":", "?"))
    return " ".join(out)


def _title_ok(title: str) -> bool:
    words = len(title.split())
    return (
        TITLE_MIN_WORDS <= words <= TITLE_MAX_WORDS
        and len(title) <= TITLE_MAX_CHARS
        and not title.endswith(".")
    )


# ============================================================================================
# Papers
# ============================================================================================


def _syllable(rng: random.Random) -> str:
    onset = _pick(rng, V.ONSETS) if rng.random() < 0.8 else ""
    return onset + _pick(rng, V.NUCLEI) + _pick(rng, V.CODAS)


def _word(rng: random.Random, syllables: int) -> str:
    word = "".join(_syllable(rng) for _ in range(syllables))
    return word[0].upper() + word[1:]


def _method_name(rng: random.Random, topic: str) -> str:
    """Invented names make each paper's key term unique (low cross-paper overlap)."""
    r = rng.random()
    suffix = _pick(rng, V.NAME_SUFFIXES[topic])
    if r < 0.30:
        name = _word(rng, rng.randint(1, 2)) + ("-" if rng.random() < 0.3 else "") + suffix
    elif r < 0.55:
        letters = "ABCDEFGHIKLMNOPRSTUVWXYZ"
        name = "".join(_pick(rng, letters) for _ in range(rng.randint(3, 6)))
        if rng.random() < 0.3:
            name += "-" + suffix
    elif r < 0.85:
        name = _word(rng, rng.randint(1, 2)) + _word(rng, 1)
    elif r < 0.94:
        name = _word(rng, 2)
    else:
        name = _pick(rng, V.GREEK) + "-" + (_word(rng, 1) if rng.random() < 0.5 else suffix)
    if rng.random() < 0.1:
        name += _pick(rng, V.NAME_TAILS)
    return name


def _bench_name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        base = _word(rng, rng.randint(1, 2))
    else:
        base = "".join(_pick(rng, "ABCDEFGHKLMNPRSTVWXZ") for _ in range(rng.randint(2, 4)))
    return base + _pick(rng, V.BENCH_SUFFIXES)


def _repo_slug(name: str) -> str:
    for greek, ascii_name in V.GREEK_ASCII.items():
        name = name.replace(greek, ascii_name)
    slug = re.sub(r"[^a-z0-9]+", "-", name.replace("++", "pp").lower()).strip("-")
    return slug or "code"


def _urls(rng: random.Random, name: str) -> tuple[str, str]:
    """(GitHub repository URL, project page URL) of a paper."""
    user = _syllable(rng) + _syllable(rng) + _pick(rng, V.USER_TAILS)
    if rng.random() < 0.3:
        user += str(rng.randint(1, 99))
    slug = _repo_slug(name)
    repo = slug if rng.random() < 0.7 else f"{slug}-{_pick(rng, ('official', 'code', 'release'))}"
    page = (
        f"https://{user}.github.io/{slug}/"
        if rng.random() < 0.5
        else f"https://{slug}-project.github.io/"
    )
    return f"https://github.com/{user}/{repo}", page


def _draw_topics(rng: random.Random) -> tuple[str, ...]:
    primary = _pick(rng, TOPICS)
    r = rng.random()
    count = 1 if r < 0.5 else 2 if r < 0.85 else 3
    topics = [primary]
    while len(topics) < count:
        pool = V.RELATED[primary] if rng.random() < 0.8 else TOPICS
        candidate = _pick(rng, pool)
        if candidate not in topics:
            topics.append(candidate)
    return tuple(topics)


def _draw_facts(rng: random.Random) -> tuple[dict[str, str], tuple[str, ...], str, bool]:
    """The subject of a paper: one primary topic's vocabulary, flavoured by its secondaries."""
    topics = _draw_topics(rng)
    v = V.TOPIC_VOCAB[topics[0]]
    s = V.TOPIC_VOCAB[topics[1]] if len(topics) > 1 else v
    r = rng.random()
    paper_type = "survey" if r < 0.06 else "benchmark" if r < 0.16 else "method"
    code_share = {"method": 0.19, "survey": 0.25, "benchmark": 0.35}[paper_type]
    has_code = rng.random() < code_share

    task, task3 = _sample(rng, v["tasks"], 2)
    task2 = _other(rng, s["tasks"], (task, task3))
    obj, obj2 = _sample(rng, v["objects"], 2)
    obj3 = _other(rng, s["objects"], (obj, obj2))
    problem, problem2 = _sample(rng, v["problems"], 2)
    data = _pick(rng, v["data"])
    data2 = _other(rng, s["data"], (data,))
    baseline, baseline2 = _sample(rng, v["baselines"], 2)
    ds1, ds2, ds3 = _sample(rng, v["datasets"], 3)
    metric, metric2 = _sample(rng, v["metrics"], 2)
    field_, field2 = _pick(rng, v["field"]), _pick(rng, s["field"])
    if field2 == field_:
        field2 = _other(rng, v["field"], (field_,))
    name = _bench_name(rng) if paper_type == "benchmark" else _method_name(rng, topics[0])
    repo_url, page_url = _urls(rng, name)
    use_page = paper_type == "method" and rng.random() < 0.2
    facts = {
        "M": name,
        "kind": _pick(rng, v["kinds"]),
        "task": task,
        "task2": task2,
        "task3": task3,
        "obj": obj,
        "obj2": obj2,
        "obj3": obj3,
        "problem": problem,
        "problem2": problem2,
        "data": data,
        "data2": data2,
        "baseline": baseline,
        "baseline2": baseline2,
        "ds1": ds1,
        "ds2": ds2,
        "ds3": ds3,
        "metric": metric,
        "metric2": metric2,
        "field": field_,
        "field2": field2,
        "repo_url": repo_url,
        "url": page_url if use_page else repo_url,
        "url_kind": "page" if use_page else "repo",
    }
    return facts, topics, paper_type, has_code


def _other(rng: random.Random, pool: Sequence[str], avoid: Sequence[str]) -> str:
    choices = [x for x in pool if x not in avoid]
    return _pick(rng, choices) if choices else _pick(rng, pool)


def _render_title(ctx: _Ctx, paper_type: str) -> str:
    frames = {
        "method": V.METHOD_TITLE_FRAMES,
        "survey": V.SURVEY_TITLE_FRAMES,
        "benchmark": V.BENCH_TITLE_FRAMES,
    }[paper_type]
    for _ in range(20):
        title = title_case(ctx.pick(frames).format_map(ctx))
        if _title_ok(title):
            return title
    return title_case(f"{ctx['M']}: {ctx['task']}")


# A plan is a list of (frames, how many, optional?) in abstract order.
_Plan = list[tuple[Sequence[str], int, bool]]


def _method_plan(rng: random.Random, topics: tuple[str, ...]) -> _Plan:
    theory_p = 0.6 if "theory" in topics else 0.12
    return [
        (V.CONTEXT_FRAMES, rng.randint(1, 2), False),
        (V.PROBLEM_FRAMES, rng.randint(1, 2), False),
        (V.CONTRIBUTION_FRAMES, 1, False),
        (V.DETAIL_FRAMES, rng.randint(1, 3), False),
        (V.THEORY_FRAMES, 1 if rng.random() < theory_p else 0, True),
        (V.EXPERIMENT_FRAMES, rng.randint(1, 2), False),
        (V.ANALYSIS_FRAMES, rng.randint(0, 2), True),
        (V.CONCLUSION_FRAMES, 1 if rng.random() < 0.55 else 0, True),
    ]


def _survey_plan(rng: random.Random, topics: tuple[str, ...]) -> _Plan:
    return [
        (V.SURVEY_CONTEXT_FRAMES, rng.randint(1, 2), False),
        (V.PROBLEM_FRAMES, 1 if rng.random() < 0.4 else 0, True),
        (V.SURVEY_SCOPE_FRAMES, 1, False),
        (V.SURVEY_TAXONOMY_FRAMES, 1, False),
        (V.SURVEY_BENCH_FRAMES, 1, False),
        (V.SURVEY_CHALLENGE_FRAMES, 1, False),
    ]


def _benchmark_plan(rng: random.Random, topics: tuple[str, ...]) -> _Plan:
    return [
        (V.CONTEXT_FRAMES, 1, False),
        (V.BENCH_GAP_FRAMES, 1, False),
        (V.BENCH_INTRO_FRAMES, 1, False),
        (V.BENCH_CONTENT_FRAMES, rng.randint(1, 2), False),
        (V.BENCH_EVAL_FRAMES, 1, False),
        (V.BENCH_FINDING_FRAMES, rng.randint(1, 2), True),
    ]


_PLANS = {"method": _method_plan, "survey": _survey_plan, "benchmark": _benchmark_plan}


def _code_sentence(ctx: _Ctx, paper_type: str, has_code: bool) -> str | None:
    if paper_type == "survey":
        return _render(ctx.pick(V.SURVEY_RESOURCE_FRAMES), ctx) if has_code else None
    if paper_type == "benchmark":
        if has_code:
            return _render(ctx.pick(V.BENCH_RELEASE_FRAMES), ctx)
        return _render(ctx.pick(V.BENCH_RELEASE_PLAIN), ctx) if ctx.rand() < 0.5 else None
    if not has_code:
        return None
    frames = V.PAGE_FRAMES if ctx["url_kind"] == "page" else V.CODE_FRAMES
    return _render(ctx.pick(frames), ctx)


def _abstract_sentences(
    ctx: _Ctx, topics: tuple[str, ...], paper_type: str, has_code: bool
) -> list[str]:
    """Render a full abstract as sentences, fitted to 450-2000 characters."""
    rng = ctx.rng
    sentences: list[str] = []
    optional: list[int] = []
    for frames, count, is_optional in _PLANS[paper_type](rng, topics):
        for frame in _sample(rng, frames, count):
            if is_optional:
                optional.append(len(sentences))
            sentences.append(_render(frame, ctx))
    code = _code_sentence(ctx, paper_type, has_code)
    limit = ABSTRACT_MAX_CHARS - 50 - (len(code) + 1 if code else 0)
    while _joined_len(sentences) > limit and len(sentences) > 5:
        drop = optional.pop() if optional else len(sentences) - 2
        del sentences[drop]
    extra = V.DETAIL_FRAMES if paper_type == "method" else V.PROBLEM_FRAMES
    while _joined_len(sentences) < ABSTRACT_MIN_CHARS + 40:
        sentences.insert(len(sentences) - 1, _render(ctx.pick(extra), ctx))
    while _joined_len(sentences) > limit:  # pathological: trim the longest sentence away
        longest = max(range(1, len(sentences)), key=lambda i: len(sentences[i]))
        del sentences[longest]
    if code:
        sentences.append(code)
    return _fix_articles(sentences)


def _joined_len(sentences: Sequence[str]) -> int:
    return sum(len(s) for s in sentences) + max(0, len(sentences) - 1)


def _paper_rng(seed: int, index: int, stream: str) -> random.Random:
    return random.Random(f"digestflow/{seed}/{index}/{stream}")


def make_paper(seed: int, pid: str | int) -> Paper:
    """The paper with this id under this seed (independent of every other config value)."""
    index = paper_index(pid)
    rng = _paper_rng(seed, index, "paper")
    facts, topics, paper_type, has_code = _draw_facts(rng)
    ctx = _Ctx(facts, rng)
    title = _render_title(ctx, paper_type)
    abstract = " ".join(_abstract_sentences(ctx, topics, paper_type, has_code))
    return Paper(index, title, abstract, topics, paper_type, has_code, facts)


# ============================================================================================
# Similarity (mirrors the pipeline's notion of textual identity)
# ============================================================================================

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Undo scrape noise like the pipeline does: HTML entities (until stable), NFKC."""
    previous = None
    while previous != text:
        previous, text = text, html.unescape(text)
    return unicodedata.normalize("NFKC", text)


def shingles(text: str, k: int = 3) -> set[tuple[str, ...]]:
    """Case-folded word k-shingles of ``text`` after :func:`normalize`."""
    words = _WORD.findall(normalize(text).casefold())
    if len(words) < k:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def shingle_jaccard(a: str, b: str, k: int = 3) -> float:
    """Word-k-shingle Jaccard of two texts (use ``title + "\\n" + abstract`` for records)."""
    return jaccard(shingles(a, k), shingles(b, k))


def record_text(title: str, abstract: str | None) -> str:
    return f"{title}\n{abstract or ''}"


# ============================================================================================
# Near-duplicate perturbations: (title, abstract, rng, paper) -> (title, abstract)
# ============================================================================================

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?]) (?=\S)")
_URL = re.compile(r"https?://\S+")
_TYPO_WORD = re.compile(r"[A-Za-z]{4,}")
_KEYBOARD = {
    "a": "qs", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "q": "w", "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "x": "zc",
    "y": "tu", "z": "x",
}  # fmt: skip

Perturbation = Callable[[str, str, random.Random, Paper], tuple[str, str]]


def split_sentences(abstract: str) -> list[str]:
    return _SENTENCE_SPLIT.split(abstract)


def _perturb_whitespace(title: str, abstract: str, rng: random.Random, paper: Paper):
    spaces = [i for i, ch in enumerate(abstract) if ch == " "]
    chars = list(abstract)
    for i in rng.sample(spaces, min(len(spaces), rng.randint(2, 6))):
        chars[i] = rng.choice(("  ", "   ", "\t", " \t ", " \t"))
    abstract = "".join(chars) + rng.choice(("", " ", "  ", "\t", " \t"))
    if rng.random() < 0.5:
        words = title.split(" ")
        if len(words) > 2:
            i = rng.randrange(1, len(words))
            words[i] = rng.choice((" ", "\t")) + words[i]
        title = " ".join(words)
    title += rng.choice(("", " ", "  ", "\t"))
    return title, abstract


def _perturb_case(title: str, abstract: str, rng: random.Random, paper: Paper):
    mode = rng.randrange(4)
    if mode == 0:  # capitalize every word, small words included
        new = " ".join(w[:1].upper() + w[1:] for w in title.split(" "))
        title = new if new != title else title.upper()
    elif mode == 1:  # sentence case
        title = title[0] + title[1:].lower()
    elif mode == 2:
        title = title.upper()
    if mode == 3 or rng.random() < 0.5:  # re-case a few words of the abstract
        spans = [
            m.span() for m in _TYPO_WORD.finditer(abstract) if not _in_url(abstract, m.start())
        ]
        chars = list(abstract)
        for start, end in rng.sample(spans, min(len(spans), rng.randint(2, 5))):
            word = abstract[start:end]
            chars[start:end] = list(word.upper() if word != word.upper() else word.lower())
        abstract = "".join(chars)
    return title, abstract


def _perturb_html(title: str, abstract: str, rng: random.Random, paper: Paper):
    def escape(text: str, nbsp: int) -> str:
        text = text.replace("&", "&amp;").replace('"', "&quot;")
        text = text.replace("'", rng.choice(("&#39;", "&#x27;", "&apos;")))
        if rng.random() < 0.4:
            text = text.replace("-", "&#45;")
        spaces = [i for i, ch in enumerate(text) if ch == " "]
        chars = list(text)
        for i in rng.sample(spaces, min(len(spaces), nbsp)):
            chars[i] = rng.choice(("&nbsp;", "\u00a0", "&#160;"))
        text = "".join(chars)
        if rng.random() < 0.2:  # double escaping, as some scrapers do
            text = text.replace("&", "&amp;")
        return text

    abstract = escape(abstract, rng.randint(1, 4))
    if rng.random() < 0.3:
        title = escape(title, 0 if rng.random() < 0.5 else 1)
    return title, abstract


def _typo(word: str, rng: random.Random) -> str:
    for _ in range(10):
        i = rng.randrange(1, len(word) - 1)
        op = rng.randrange(4)
        if op == 0:
            new = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif op == 1:
            new = word[:i] + word[i + 1 :]
        elif op == 2:
            new = word[:i] + word[i] + word[i:]
        else:
            near = _KEYBOARD.get(word[i].lower(), "e")
            new = word[:i] + rng.choice(near) + word[i + 1 :]
        if new != word:
            return new
    return word[:-1]


def _in_url(text: str, pos: int) -> bool:
    return any(m.start() <= pos < m.end() for m in _URL.finditer(text))


def _perturb_typo(title: str, abstract: str, rng: random.Random, paper: Paper):
    matches = [m for m in _TYPO_WORD.finditer(abstract) if not _in_url(abstract, m.start())]
    by_word: dict[str, tuple[int, int]] = {}
    for m in matches:
        by_word.setdefault(m.group(0).lower(), m.span())
    words = sorted(by_word)  # sorted: never depend on dict/set ordering of random draws
    chosen = sorted(
        (by_word[w] for w in rng.sample(words, min(len(words), rng.randint(1, 3)))), reverse=True
    )
    for start, end in chosen:
        abstract = abstract[:start] + _typo(abstract[start:end], rng) + abstract[end:]
    return title, abstract


def _perturb_truncate(title: str, abstract: str, rng: random.Random, paper: Paper):
    cut = max(TRUNCATE_MIN_CHARS, int(len(abstract) * rng.uniform(0.85, 0.95)))
    return title, abstract[:cut].rstrip()


def _perturb_append_link(title: str, abstract: str, rng: random.Random, paper: Paper):
    end = "." if rng.random() < 0.75 else ""
    return title, f"{abstract.rstrip()} Code is available at {paper.facts['repo_url']}{end}"


def _perturb_drop_sentence(title: str, abstract: str, rng: random.Random, paper: Paper):
    sentences = split_sentences(abstract)
    if len(sentences) < 5:
        return title, abstract
    budget = 0.15 * len(abstract)
    candidates = [i for i in range(1, len(sentences)) if len(sentences[i]) <= budget]
    if candidates:
        drop = rng.choice(candidates)
    else:
        drop = min(range(len(sentences)), key=lambda i: len(sentences[i]))
    del sentences[drop]
    return title, " ".join(sentences)


def change_title(title: str, rng: random.Random) -> str:
    """Reword a title slightly: synonym swap, inserted or dropped word, suffix, or 'A and B' swap."""
    ops = ["synonym", "insert", "suffix", "swap", "drop"]
    rng.shuffle(ops)
    for op in ops + ["suffix"]:
        words = title.split(" ")
        new = None
        if op == "synonym":
            spots = [i for i, w in enumerate(words) if w in V.TITLE_SYNONYMS]
            if spots:
                i = rng.choice(spots)
                words[i] = rng.choice(V.TITLE_SYNONYMS[words[i]])
                new = " ".join(words)
        elif op == "insert":
            spots = [
                i
                for i in range(1, len(words))
                if words[i][:1].isupper() and not words[i - 1].endswith(("-",))
            ]
            word = rng.choice(V.TITLE_INSERTS)
            if spots and word not in words:
                words.insert(rng.choice(spots), word)
                new = " ".join(words)
        elif op == "suffix":
            if not title.endswith("?"):
                new = f"{title} {rng.choice(V.TITLE_SUFFIXES)}"
        elif op == "swap":
            spots = [i for i in range(1, len(words) - 1) if words[i] == "and"]
            if spots:
                i = rng.choice(spots)
                if not words[i + 1].endswith((":", "?")):
                    words[i - 1], words[i + 1] = words[i + 1], words[i - 1]
                    new = " ".join(words)
        elif op == "drop" and len(words) > 5:
            spots = [i for i in range(1, len(words)) if words[i] in V.PHRASES["Adj"]]
            if spots:
                del words[rng.choice(spots)]
                new = " ".join(words)
        if new and new != title and _title_ok(new):
            return new
    return title + " (Extended)" if _title_ok(title + " (Extended)") else title[:-1]


def _perturb_change_title(title: str, abstract: str, rng: random.Random, paper: Paper):
    return change_title(title, rng), abstract


PERTURBATIONS: dict[str, Perturbation] = {
    "whitespace": _perturb_whitespace,
    "case": _perturb_case,
    "html": _perturb_html,
    "typo": _perturb_typo,
    "truncate": _perturb_truncate,
    "append_link": _perturb_append_link,
    "drop_sentence": _perturb_drop_sentence,
    "change_title": _perturb_change_title,
}


def _splice_targets(sentences: list[str], name: str, has_code: bool) -> list[int]:
    """Positions an original sentence may overwrite: not the link sentence, and not the
    first mention of the method name (a revision keeps naming its method)."""
    targets = list(range(len(sentences) - (1 if has_code else 0)))
    first_mention = next((i for i in targets if name in sentences[i]), None)
    if first_mention is not None:
        targets.remove(first_mention)
    return targets


def revise(paper: Paper, rng: random.Random) -> tuple[str, str]:
    """An "arXiv v2": same facts, most sentences rewritten and reordered (Jaccard 0.2-0.5).

    A fresh rendering of the same facts shares only the key terms (~0.1 Jaccard); original
    sentences are then spliced back one at a time until the similarity lands in the band.
    """
    original = record_text(paper.title, paper.abstract)
    original_shingles = shingles(original)
    title = paper.title if rng.random() < 0.5 else change_title(paper.title, rng)
    old = split_sentences(paper.abstract)
    best: tuple[float, str] | None = None
    for _attempt in range(6):
        ctx = _Ctx(dict(paper.facts), rng)
        new = _abstract_sentences(ctx, paper.topics, paper.paper_type, paper.has_code)
        if paper.has_code:
            new[-1] = old[-1]  # authors keep their link sentence
        body = new[1:-1] if paper.has_code else new[1:]
        if len(body) > 3 and rng.random() < 0.7:  # reorder the middle a little
            i = rng.randrange(len(body) - 1)
            body[i], body[i + 1] = body[i + 1], body[i]
        new = [new[0], *body, *([new[-1]] if paper.has_code else [])]
        donors = list(range(len(old) - (1 if paper.has_code else 0)))
        rng.shuffle(donors)
        targets = _splice_targets(new, paper.facts["M"], paper.has_code)
        while True:
            abstract = " ".join(new)
            score = jaccard(original_shingles, shingles(record_text(title, abstract)))
            fits = ABSTRACT_MIN_CHARS <= len(abstract) <= ABSTRACT_MAX_CHARS
            if fits and REVISION_LOW <= score <= REVISION_HIGH:
                return title, abstract
            if fits and (best is None or abs(score - 0.35) < abs(best[0] - 0.35)):
                best = (score, abstract)
            if score > REVISION_HIGH or not donors or not targets:
                break
            donor = donors.pop()
            slot = min(targets, key=lambda i, d=donor: (abs(i - d), i))
            targets.remove(slot)
            new[slot] = old[donor]
    if best is not None and 0.2 <= best[0] <= 0.5:
        return title, best[1]
    # Last resort: keep the first half of the original sentences, re-render the rest.
    half = len(old) // 2
    ctx = _Ctx(dict(paper.facts), rng)
    tail = _abstract_sentences(ctx, paper.topics, paper.paper_type, False)[half:]
    return title, " ".join(old[:half] + tail)[:ABSTRACT_MAX_CHARS].rstrip()


# ============================================================================================
# Pages
# ============================================================================================


class _PageWriter:
    """Streams one digest page in either layout, with optional CRLF + BOM and compression."""

    FLUSH_CHARS = 1 << 18

    def __init__(
        self, stream: BinaryIO, compact: bool, date: dt.date, crlf: bool, bom: bool
    ) -> None:
        self._stream = stream
        self._compact = compact
        self._newline = "\r\n" if crlf else "\n"
        self._buffer: list[str] = []
        self._size = 0
        self._first_content = True
        if bom:
            stream.write(UTF8_BOM)
        if compact:
            self._sep = self._newline
            header = list(COMPACT_HEADER)
        else:
            self._sep = self._newline * 2
            header = [*SPACED_HEADER, f"{date:%b} {date.day}"]
        self._buffer.append(self._sep.join(header))

    def line(self, text: str) -> None:
        if self._first_content and self._compact:
            text = GLUED_PREFIX + text
        self._first_content = False
        self._buffer.append(self._sep)
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= self.FLUSH_CHARS:
            self._flush()

    def _flush(self) -> None:
        self._stream.write("".join(self._buffer).encode("utf-8"))
        self._buffer.clear()
        self._size = 0

    def close(self) -> None:
        self._flush()  # no newline at end of file, like the real dumps


def _open_output(path: Path, compression: str | None) -> BinaryIO:
    if compression == "gz":
        raw = open(path, "wb")  # noqa: SIM115 - closed through the GzipFile below
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        gz.myfileobj = raw  # GzipFile.close() then closes the raw file too
        return gz
    if compression == "bz2":
        return bz2.BZ2File(path, "wb", compresslevel=9)
    return open(path, "wb")  # noqa: SIM115 - returned to the caller, closed there


def _file_compression(config: GeneratorConfig, k: int) -> str | None:
    if config.compress == "mixed":
        return (None, "gz", "bz2")[k % 3]
    return config.compress


def _is_compact(config: GeneratorConfig, k: int) -> bool:
    """Error diffusion: the first k files hold floor(k * share) compact pages, interleaved."""
    share = config.compact_layout_share
    return math.floor((k + 1) * share + 1e-9) > math.floor(k * share + 1e-9)


def _is_crlf_page(config: GeneratorConfig, k: int) -> bool:
    """A few pages (one in 12, at least one) get CRLF endings and a BOM when malformed > 0."""
    if config.malformed_rate <= 0:
        return False
    return k % 12 == min(5, config.files - 1)


def file_name(config: GeneratorConfig, k: int) -> str:
    date = config.start_date + dt.timedelta(days=k)
    suffix = {None: "", "gz": ".gz", "bz2": ".bz2"}[_file_compression(config, k)]
    return f"digest_{date.isoformat()}.txt{suffix}"


# ============================================================================================
# Slots and the generator
# ============================================================================================


def _slot_labels(
    config: GeneratorConfig, start: int, n: int, rng: random.Random, near_counter: int
) -> list[str]:
    """Variants of slots [start, start + n): exact cumulative quotas, shuffled within the file."""
    end = start + n

    def quota(rate: float) -> int:
        return math.floor(end * rate + 1e-9) - math.floor(start * rate + 1e-9)

    labels: list[str] = []
    labels += ["exact"] * quota(config.exact_dup_rate)
    offset = config.seed % len(NEAR_DUP_CLASSES)
    for i in range(quota(config.near_dup_rate)):
        labels.append(NEAR_DUP_CLASSES[(near_counter + i + offset) % len(NEAR_DUP_CLASSES)])
    labels += ["revision"] * quota(config.revision_rate)
    labels += ["missing_abstract"] * quota(config.malformed_rate)
    labels += ["original"] * (n - len(labels))
    rng.shuffle(labels)
    if start == 0 and labels[0] != "original":  # the corpus must open with a new paper
        j = labels.index("original")
        labels[0], labels[j] = labels[j], labels[0]
    return labels


class _Corpus:
    """Generation state: the pool of emitted papers (a few ints each) and an LRU of texts."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.next_index = 0
        self.pool_index = array("q")
        self.pool_file = array("l")
        self.pool_slot = array("l")
        self.file_names: list[str] = []
        self.near_counter = 0
        self.malformed = 0
        self._cache: OrderedDict[int, Paper] = OrderedDict()
        self._recent_scale = max(10.0, float(config.records_per_file))

    def paper(self, index: int) -> Paper:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        paper = make_paper(self.config.seed, index)
        self._cache[index] = paper
        if len(self._cache) > _CACHE_PAPERS:
            self._cache.popitem(last=False)
        return paper

    def new_paper(self) -> Paper:
        paper = self.paper(self.next_index)
        self.next_index += 1
        return paper

    def pick_earlier(self, rng: random.Random) -> int:
        """Position in the pool of a paper to re-scrape: recent papers are more likely."""
        n = len(self.pool_index)
        if rng.random() < _RECENT_SHARE:
            back = int(rng.expovariate(1.0 / self._recent_scale))
            return max(0, n - 1 - back)
        return rng.randrange(n)

    def slot(
        self, label: str, rng: random.Random, k: int, idx: int
    ) -> tuple[str, str | None, dict]:
        """Title, abstract (None when malformed) and ground-truth row of one record slot."""
        copy_of = None
        if label in ("original", "missing_abstract"):
            paper = self.new_paper()
            title, abstract = paper.title, paper.abstract
            if label == "original":
                self.pool_index.append(paper.index)
                self.pool_file.append(k)
                self.pool_slot.append(idx)
            else:
                abstract = None
                self.malformed += 1
        else:
            pos = self.pick_earlier(rng)
            paper = self.paper(self.pool_index[pos])
            copy_of = f"{self.file_names[self.pool_file[pos]]}#{self.pool_slot[pos]}"
            if label == "exact":
                title, abstract = paper.title, paper.abstract
            elif label == "revision":
                title, abstract = revise(paper, rng)
            else:
                title, abstract = PERTURBATIONS[label](paper.title, paper.abstract, rng, paper)
        row = {
            "source_file": self.file_names[k],
            "record_index": idx,
            "paper_id": paper.paper_id,
            "variant": label,
            "copy_of": copy_of,
            "topics": list(paper.topics),
            "paper_type": paper.paper_type,
            "has_code": paper.has_code,
        }
        return title, abstract, row


def generate(out_dir: str | Path, config: GeneratorConfig) -> GenerationSummary:
    """Write ``config.files`` digest pages and ``ground_truth.jsonl`` into ``out_dir``.

    Pages are streamed one at a time; files of the same names are replaced, other files in
    ``out_dir`` are left alone (whether a non-empty directory is acceptable is the CLI's call).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = _Corpus(config)
    files: list[str] = []
    truth_path = out / GROUND_TRUTH_NAME
    with open(truth_path, "w", encoding="utf-8", newline="\n") as truth:
        for k in range(config.files):
            name = file_name(config, k)
            corpus.file_names.append(name)
            path = out / name
            files.append(str(path))
            start = k * config.records_per_file
            n = min(config.records_per_file, config.records - start)
            rng = random.Random(f"digestflow/{config.seed}/file/{k}")
            labels = _slot_labels(config, start, n, rng, corpus.near_counter)
            corpus.near_counter += sum(1 for x in labels if x in PERTURBATIONS)
            crlf = _is_crlf_page(config, k)
            date = config.start_date + dt.timedelta(days=k)
            with _open_output(path, _file_compression(config, k)) as stream:
                page = _PageWriter(stream, _is_compact(config, k), date, crlf=crlf, bom=crlf)
                rows = []
                for idx, label in enumerate(labels):
                    title, abstract, row = corpus.slot(label, rng, k, idx)
                    page.line(title)
                    if abstract is not None:
                        page.line(abstract)
                    rows.append(json.dumps(row))
                page.close()
            truth.write("\n".join(rows) + "\n")
    return GenerationSummary(
        files=files,
        records=config.records,
        distinct_papers=len(corpus.pool_index),
        malformed=corpus.malformed,
        ground_truth=str(truth_path),
    )


# ============================================================================================
# Reading back (tests and benchmarks)
# ============================================================================================


def read_ground_truth(path: str | Path) -> list[dict]:
    """All ground-truth rows of a generated corpus (``path``: the jsonl or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / GROUND_TRUTH_NAME
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def open_dump(path: str | Path) -> BinaryIO:
    """Open a dump for binary reading, decompressing by suffix."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - returned to the caller


_HEADERS = frozenset(h.casefold() for h in SPACED_HEADER + COMPACT_HEADER)
_DATE_LINE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}$")


def read_slots(path: str | Path) -> list[tuple[str, str | None]]:
    """Reference reader for *generated* dumps: record slots as (title, abstract or None).

    Deliberately simple (the pipeline has the real parser): headers, the date line and blank
    lines are skipped, a glued ``Subscribe`` is removed, and a line is an abstract iff it is at
    least 250 characters long (generated titles are <= 200, abstracts >= 300).
    """
    with open_dump(path) as handle:
        text = handle.read().decode("utf-8-sig")
    slots: list[tuple[str, str | None]] = []
    for line in _content_lines(text):
        if len(line) >= SHAPE_SPLIT_CHARS and slots and slots[-1][1] is None:
            slots[-1] = (slots[-1][0], line)
        else:
            slots.append((line, None))
    return slots


def _content_lines(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.casefold() in _HEADERS or _DATE_LINE.match(line):
            continue
        if line.startswith(GLUED_PREFIX) and line[len(GLUED_PREFIX) :][:1] not in ("", " "):
            line = line[len(GLUED_PREFIX) :]
        yield line
