"""Text cleaning and normalization shared by the parser, the deduplicator and the embedder.

Two levels, on purpose:
- ``clean_text`` keeps what a reader sees (case, punctuation) and only undoes scrape noise:
  HTML entities, Unicode compatibility forms (NFKC), invisible characters, runs of whitespace.
- ``tokens`` goes further (case-folded word tokens) and defines *textual identity*: two records
  with the same tokens are exact duplicates (same ``content_hash``) and shingles are built on them.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata

# Characters nobody sees. Separators that are whitespace (\v \f \r, \x1c-\x1f, U+2028/9) are
# left to _WHITESPACE: deleting them would glue the words on either side together.
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2060\ufeff\x00-\x08\x0e-\x1b\x7f]")
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# Stops before whitespace, quotes, brackets; trailing sentence punctuation is trimmed below.
_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?"


def clean_text(text: str) -> str:
    """Undo scrape noise while keeping the text as written.

    HTML entities are unescaped until stable (scrapers double-escape: ``&amp;amp;``).
    """
    if _is_plain(text):
        # Printable ASCII: no entity, NFKC is the identity, no invisible character and no
        # whitespace but single spaces, so only the ends can change (most lines; the regex
        # passes below cost the parser about a third of its time).
        return text.strip(" ")
    return _clean_any_text(text)


def _clean_any_text(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def _is_plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and "&" not in text and "  " not in text


# For ASCII text, ``\w`` is exactly letters, digits and "_": mapping every other ASCII character
# to a space and splitting gives the same tokens as the regex, at about half its cost.
_ASCII_NON_WORD = str.maketrans(
    {chr(i): " " for i in range(128) if not (chr(i).isalnum() or chr(i) == "_")}
)


def tokens(text: str) -> list[str]:
    """Case-folded word tokens of already-cleaned text: the unit of textual identity."""
    if text.isascii():
        return text.lower().translate(_ASCII_NON_WORD).split()
    return _regex_tokens(text)


def _regex_tokens(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def normalized_text(title: str, abstract: str) -> str:
    """Title and abstract reduced to their tokens; equal strings mean exact duplicates."""
    if len(title) + len(abstract) > _MEMO_MAX_CHARS:
        return _normalized_text(title, abstract)
    return _recently_normalized(title, abstract)


# The parser hashes a record's normalized text and, in the same fused stage and right after,
# the deduplicator signs it: a few recent results save recomputing every record's tokens (a
# measured cost of the dedup path). Small and bounded: at most 32 texts of <= 16k chars.
_MEMO_MAX_CHARS = 1 << 14


def _normalized_text(title: str, abstract: str) -> str:
    return " ".join(tokens(title)) + "\n" + " ".join(tokens(abstract))


_recently_normalized = functools.lru_cache(maxsize=32)(_normalized_text)


def content_hash(title: str, abstract: str) -> str:
    """SHA-256 (hex, 32 chars kept) of :func:`normalized_text`."""
    return hashlib.sha256(normalized_text(title, abstract).encode("utf-8")).hexdigest()[:32]


def code_urls(text: str) -> tuple[str, ...]:
    """Links in ``text`` in order of appearance, without duplicates or trailing punctuation."""
    if "://" not in text:
        return ()
    seen: dict[str, None] = {}
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TRAILING)
        if url.partition("://")[2]:  # something after the scheme (``http://a`` counts)
            seen.setdefault(url, None)
    return tuple(seen)
