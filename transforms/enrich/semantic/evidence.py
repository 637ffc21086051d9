"""What two canonicals share besides their embedding's direction (pure): the *evidence* the
revision rule (:mod:`.rule`) asks of a pair below its cosine-alone bar, and the *blocking
keys* that make every pair with evidence meet in one bucket (:func:`blocking_keys`).

Evidence kinds of a pair (a, b):

* ``name``  a coined term both *name* (:func:`.names.coined_names`: camel case or an acronym,
  in the title or twice in the abstract): a revision keeps naming its method;
* ``title`` the same title, or one title's tokens a contiguous run of the other's of at least
  :data:`MIN_CONTAINED_TOKENS` tokens ("X" -> "X: The Role of Y and Z", "Name: X",
  "Rethinking X"; 3 tokens would let "Generative Adversarial Networks" contain GAN papers);
* ``link``  a shared code link (arXiv, DOI and Wikipedia citations do not count);
* ``lead``  the same first sentence (at least :data:`MIN_LEAD_TOKENS` tokens);
* ``words`` content-word Jaccard of title + abstract >= :data:`WORDS_JACCARD` (stop words,
  numbers and tokens of <= 2 characters dropped): a reworded v2 keeps most of its content
  words, two papers on one topic share few. The margin behind each constant is printed by
  ``make bench`` (section *semantic*) and recorded in docs/benchmarks.md.

``words`` has no blocking key (a word set has no exact key); a pair with only that evidence
is found through another key it shares. Keys are short hashes (``t:``, ``l:``, ``c:``) or
the coined name itself, stored per record in ``paper_names`` for the update's plan.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from transforms.enrich.semantic.names import coined_names
from transforms.text import code_urls, tokens

EVIDENCE_KINDS = ("name", "title", "link", "lead", "words")
WORDS_JACCARD = 0.35
MIN_CONTAINED_TOKENS = 4
MIN_LEAD_TOKENS = 6

TITLE_KEY = "t:"
LEAD_KEY = "l:"
LINK_KEY = "c:"

_CITATION = re.compile(r"^(www\.)?(arxiv\.org|(dx\.)?doi\.org|[a-z]+\.wikipedia\.org)/")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_TITLE_SEGMENT = re.compile(r"[:?!;]|\s[-–—]\s")


@dataclass(frozen=True)
class PaperView:
    """What the rule compares of one canonical, computed once from its title and abstract."""

    title_tokens: tuple[str, ...]
    names: frozenset[str]  # coined names
    links: frozenset[str]  # normalised code links
    lead: str | None  # the first sentence's tokens, None if shorter than MIN_LEAD_TOKENS
    words: frozenset[str]  # content words of title + abstract
    title_segments: tuple[tuple[str, ...], ...] = ()  # parts between ':' '?' ';' or a dash


def normalised_link(url: str) -> str:
    url = re.sub(r"^[a-z]+://(www\.)?", "", url.casefold()).rstrip("/")
    return url.removesuffix(".git")


def _lead(abstract: str) -> str | None:
    first = _SENTENCE_END.split(abstract, maxsplit=1)[0] if abstract else ""
    lead = tokens(first)
    return " ".join(lead) if len(lead) >= MIN_LEAD_TOKENS else None


def _content_words(text: str) -> frozenset[str]:
    return frozenset(
        t for t in tokens(text) if len(t) > 2 and not t.isdigit() and t not in ENGLISH_STOP_WORDS
    )


def paper_view(title: str, abstract: str) -> PaperView:
    """The view of a record's (cleaned) title and abstract."""
    links = (normalised_link(u) for u in code_urls(abstract))
    return PaperView(
        title_tokens=tuple(tokens(title)),
        names=coined_names(title, abstract),
        links=frozenset(u for u in links if not _CITATION.match(u)),
        lead=_lead(abstract),
        words=_content_words(f"{title} {abstract}"),
        title_segments=tuple(_segments(title)),
    )


def _contains(long: Sequence[str], short: Sequence[str]) -> bool:
    n = len(short)
    return any(tuple(long[i : i + n]) == tuple(short) for i in range(len(long) - n + 1))


def title_contained(a: PaperView, b: PaperView) -> bool:
    """The same title tokens, or one title a contiguous run (>= 4 tokens) of the other."""
    if a.title_tokens == b.title_tokens:
        return bool(a.title_tokens)
    short, long = sorted((a.title_tokens, b.title_tokens), key=len)
    return len(short) >= MIN_CONTAINED_TOKENS and _contains(long, short)


def words_jaccard(a: PaperView, b: PaperView) -> float:
    union = len(a.words | b.words)
    return len(a.words & b.words) / union if union else 0.0


def evidence(a: PaperView, b: PaperView) -> frozenset[str]:
    """The kinds of evidence (:data:`EVIDENCE_KINDS`) the pair shares."""
    found = set()
    if a.names & b.names:
        found.add("name")
    if title_contained(a, b):
        found.add("title")
    if a.links & b.links:
        found.add("link")
    if a.lead is not None and a.lead == b.lead:
        found.add("lead")
    if words_jaccard(a, b) >= WORDS_JACCARD:
        found.add("words")
    return frozenset(found)


def _key(prefix: str, text: str) -> str:
    return prefix + hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def title_runs(title_tokens: Sequence[str]) -> set[tuple[str, ...]]:
    """The runs of a title another paper's whole title can be: the title itself, its prefixes
    and suffixes of >= 4 tokens, and its segments between ':' '?' ';' or a dash ("X: The Role
    of Y" holds X, "Name: X" and "Rethinking X" hold X as a suffix, "Do X? Evidence from Y"
    as a segment). A title inside another one anywhere else is not found (rare in versions)."""
    n = len(title_tokens)
    runs = {tuple(title_tokens)} if n else set()
    for k in range(MIN_CONTAINED_TOKENS, n):
        runs.add(tuple(title_tokens[:k]))
        runs.add(tuple(title_tokens[n - k :]))
    return runs


def _segments(title: str) -> Iterable[tuple[str, ...]]:
    for part in _TITLE_SEGMENT.split(title):
        seg = tuple(tokens(part))
        if len(seg) >= MIN_CONTAINED_TOKENS:
            yield seg


def _title_runs_of(view: PaperView) -> set[tuple[str, ...]]:
    return title_runs(view.title_tokens) | set(view.title_segments)


def title_run_keys(view: PaperView) -> dict[str, bool]:
    """The title keys of a view: key -> True for a run that is part of the title (it pairs
    only with a paper whose whole title it is), False for the whole title."""
    keys = {_key(TITLE_KEY, " ".join(run)): True for run in _title_runs_of(view)}
    keys[_key(TITLE_KEY, " ".join(view.title_tokens))] = False
    return keys


def blocking_keys(title: str, abstract: str, view: PaperView | None = None) -> frozenset[str]:
    """Every key a pair with ``name``, ``title``, ``link`` or ``lead`` evidence shares: the
    coined names, a hash per title run (:func:`title_runs`, segments), of the first sentence
    and of each code link. Two titles that merely share a run also meet; the rule decides."""
    view = view or paper_view(title, abstract)
    keys = set(view.names)
    keys.update(_key(TITLE_KEY, " ".join(run)) for run in _title_runs_of(view))
    keys.update(_key(LINK_KEY, link) for link in view.links)
    if view.lead is not None:
        keys.add(_key(LEAD_KEY, view.lead))
    return frozenset(keys)


def paper_names(title: str, abstract: str) -> frozenset[str]:
    """A record's blocking keys (:func:`blocking_keys`), as stored in ``paper_names``."""
    return blocking_keys(title, abstract)


def names_row_of(
    record_id: str,
    title: str,
    abstract: str,
    candidate: bool,
    vector_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``paper_names`` row of a record: what an update blocks new canonicals against
    without reading the texts of the corpus again. A merge candidate (a lexical canonical
    with a vector) also holds the band keys of its own vector (:mod:`.vectors`)."""
    return {
        "record_id": record_id,
        "names": sorted(paper_names(title, abstract) | set(vector_keys)),
        "candidate": candidate,
    }
