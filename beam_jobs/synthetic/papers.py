"""A synthetic paper as a pure function of ``(seed, paper index)`` (:func:`make_paper`): its
facts (topics, type, invented method name, tasks, datasets, links), its title and its abstract,
rendered from the frames and phrase pools of :mod:`beam_jobs.synthetic.vocabulary`."""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from beam_jobs.synthetic import vocabulary as V

TOPICS: tuple[str, ...] = tuple(V.TOPIC_VOCAB)
PAPER_TYPES: tuple[str, ...] = ("method", "survey", "benchmark")

# Shape limits the generated text respects (real dumps: titles <= ~175 chars, abstracts
# >= ~480 chars); the reference reader (dumps.read_slots) splits titles from abstracts at
# SHAPE_SPLIT_CHARS, between the two.
TITLE_MAX_CHARS = 200
TITLE_MIN_WORDS, TITLE_MAX_WORDS = 3, 25
ABSTRACT_MIN_CHARS, ABSTRACT_MAX_CHARS = 450, 2000


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
    """``rng.choice`` without ``_randbelow``: several times faster, and this is the hot path."""
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


def title_ok(title: str) -> bool:
    words = len(title.split())
    return (
        TITLE_MIN_WORDS <= words <= TITLE_MAX_WORDS
        and len(title) <= TITLE_MAX_CHARS
        and not title.endswith(".")
    )


# ============================================================================================
# Facts, titles and abstracts
# ============================================================================================


def _syllable(rng: random.Random) -> str:
    onset = _pick(rng, V.ONSETS) if rng.random() < 0.8 else ""
    return onset + _pick(rng, V.NUCLEI) + _pick(rng, V.CODAS)


# What follows a term of art after a hyphen: MoE-Lite, DiT-Flow, KV-Router.
_TERM_ENDS: tuple[str, ...] = (
    *V.NAME_HEADS,
    *(t.lstrip("-") for t in V.NAME_TAIL_X if t[1:2].isupper()),
)


def _head(rng: random.Random, topic: str) -> str:
    """The last part of a compound: the topic's own ("Diff", "RAG", "ViT") or a generic one."""
    return _pick(rng, V.NAME_SUFFIXES[topic] if rng.random() < 0.6 else V.NAME_HEADS)


def _method_name(rng: random.Random, topic: str) -> str:
    """A coined method name built from recognisable parts, as the field names methods:
    "FlashDiff", "RetroFormer", "GraphRAG-X", "SALT", "MoE-Lite", "Heron-VL", "μ-Flow"."""
    r = rng.random()
    if r < 0.40:  # compound: FlashDiff, SparseMixer
        name = _pick(rng, V.NAME_PREFIXES) + _head(rng, topic)
    elif r < 0.58:  # acronym, often with a head: SALT, DINO-Seg
        name = _pick(rng, V.ACRONYMS)
        if rng.random() < 0.5:
            name += "-" + _head(rng, topic)
    elif r < 0.72:  # around a term of art: FlashLoRA, SparseMoE, DiT-Flow, MoE-Lite
        term = _pick(rng, V.MIXED_ACRONYMS)
        if rng.random() < 0.5:
            name = _pick(rng, V.NAME_PREFIXES) + term
        else:
            name = term + "-" + _pick(rng, _TERM_ENDS)
    elif r < 0.90:  # an evocative word: Kestrel, Heron-VL, QuartzFlow
        name = _pick(rng, V.NAME_WORDS)
        if rng.random() < 0.7:
            name += _pick(rng, ("-", "")) + _head(rng, topic)
    else:  # Greek-lettered: μ-Flow, α-Former
        name = _pick(rng, V.GREEK) + "-" + _head(rng, topic)
    t = rng.random()
    if t < 0.08:
        name += _pick(rng, V.NAME_TAILS)
    elif t < 0.14:
        name += _pick(rng, V.NAME_TAIL_X)
    return name


def _bench_name(rng: random.Random) -> str:
    """ChartQA, MMReason-Bench, DeepMathEval, SALT-Bench."""
    r = rng.random()
    if r < 0.6:
        base = _pick(rng, V.BENCH_BASES)
    elif r < 0.85:
        base = _pick(rng, V.BENCH_PREFIXES) + _pick(rng, V.BENCH_BASES)
    else:
        base = _pick(rng, V.ACRONYMS)
    suffix = _pick(rng, V.BENCH_SUFFIXES)
    if base.isupper() and suffix[0] != "-":
        suffix = "-" + suffix
    return base + suffix


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
        "page_url": page_url,
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
        if title_ok(title):
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


def distinct_papers(seed: int) -> Iterator[Paper]:
    """The papers a corpus under ``seed`` publishes, in order: :func:`make_paper` for index 0, 1,
    2, ... skipping an index whose title (casefolded) an earlier paper already has. Real digests
    almost never list two different papers under one title, and two papers with one title would
    be merged by any deduplicator, so the ground truth must not contain them. Remembers one
    64-bit title hash per paper."""
    seen: set[int] = set()
    for index in itertools.count():
        paper = make_paper(seed, index)
        key = int.from_bytes(
            hashlib.blake2b(paper.title.casefold().encode(), digest_size=8).digest()
        )
        if key not in seen:
            seen.add(key)
            yield paper


def abstract_sentences(
    facts: dict[str, str],
    rng: random.Random,
    topics: tuple[str, ...],
    paper_type: str,
    has_code: bool,
) -> list[str]:
    """A fresh rendering of an abstract from a paper's ``facts``, drawing from ``rng``, as
    sentences (what a revision re-renders: same subject, different wording)."""
    return _abstract_sentences(_Ctx(facts, rng), topics, paper_type, has_code)
