"""How a re-scrape differs from the paper it copies: one function per near-duplicate class
(:data:`PERTURBATIONS`, each keeping word-3-shingle Jaccard to the original >= 0.75), and
:func:`revise`, the heavy "arXiv v2" rewrite meant to stay *below* the dedup threshold."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from beam_jobs.synthetic import vocabulary as V
from beam_jobs.synthetic.papers import (
    ABSTRACT_MAX_CHARS,
    ABSTRACT_MIN_CHARS,
    Paper,
    abstract_sentences,
    title_ok,
)
from beam_jobs.synthetic.similarity import jaccard, record_text, shingles

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

# ``truncate`` never cuts an abstract below this: still longer than dumps.SHAPE_SPLIT_CHARS,
# so the reference reader keeps telling it from a title.
TRUNCATE_MIN_CHARS = 300

# Revision target band for the word-3-shingle Jaccard to the original (accepted: 0.2-0.5).
REVISION_LOW, REVISION_HIGH = 0.25, 0.45


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
    repo = paper.facts["repo_url"]
    if repo in abstract:  # a paper that already cites its code gains its project page
        return title, f"{abstract.rstrip()} Project page: {paper.facts['page_url']}{end}"
    return title, f"{abstract.rstrip()} Code is available at {repo}{end}"


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
        if new and new != title and title_ok(new):
            return new
    return title + " (Extended)" if title_ok(title + " (Extended)") else title[:-1]


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
        new = abstract_sentences(paper.facts, rng, paper.topics, paper.paper_type, paper.has_code)
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
    tail = abstract_sentences(paper.facts, rng, paper.topics, paper.paper_type, False)[half:]
    return title, " ".join(old[:half] + tail)[:ABSTRACT_MAX_CHARS].rstrip()
