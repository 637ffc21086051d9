"""Textual similarity as the pipeline sees it (HTML entities undone, NFKC, case-folded word
3-shingles, Jaccard): the measure the near-duplicate classes and revisions are built to."""

from __future__ import annotations

import html
import re
import unicodedata

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
