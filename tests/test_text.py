"""transforms.text: cleaning keeps what a reader sees; tokens and hashes define identity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.text import (
    _clean_any_text,
    _regex_tokens,
    clean_text,
    code_urls,
    content_hash,
    normalized_text,
    tokens,
)

# Mostly printable ASCII (the fast paths) with what makes them step aside: entities, runs of
# spaces, tabs, control and invisible characters, compatibility forms, non-ASCII letters.
_MIXED_TEXT = st.lists(
    st.sampled_from(
        [
            *"aZ09_ -.,;:!?()&#x;<>/\\'\"",
            "&amp;",
            "&lt;",
            "&#38;",
            "  ",
            "\t",
            "\n",
            "\x07",
            "\x7f",
            "\u00a0",
            "\u200b",
            "\u00ad",
            "ﬁ",
            "é",
            "ß",
            "İ",
            "Ⅻ",
            "\u2028",
        ]
    ),
    max_size=60,
).map("".join)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Diffusion &amp; Flows", "Diffusion & Flows"),
        ("Diffusion &amp;amp; Flows", "Diffusion & Flows"),  # double-escaped
        ("&amp;amp;amp;lt;b&amp;gt;", "<b>"),  # escaped again and again
        ("x &lt; y &#62; z &#x3D; w", "x < y > z = w"),
        ("ﬁne-tuning on ＧＰＵｓ with ½ the cost", "fine-tuning on GPUs with 1⁄2 the cost"),
        ("e\u0301te\u0301", "\u00e9t\u00e9"),  # NFKC composes
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff\u00adjoin", "zerowidthjoin"),
        ("soft\u00adhyphen and bell\x07 and del\x7f", "softhyphen and bell and del"),
        ("  tabs\tand\n\nnewlines  \r\n", "tabs and newlines"),
        ("non\u00a0breaking&nbsp;spaces\u2009thin", "non breaking spaces thin"),
        ("line\u2028separator\u2029paragraph", "line separator paragraph"),
        ("carriage\rreturn\x0bvertical\x0cfeed\x1funit", "carriage return vertical feed unit"),
        ("", ""),
        (" \u200b ", ""),
        ("Keep CASE, punctuation: (yes)!", "Keep CASE, punctuation: (yes)!"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@settings(max_examples=500, deadline=None)
@given(st.lists(_MIXED_TEXT | st.text(max_size=20), max_size=4).map("".join))
def test_fast_paths_equal_the_general_rules(text: str) -> None:
    # clean_text and tokens take a shortcut on printable ASCII; it must change nothing.
    assert clean_text(text) == _clean_any_text(text)
    assert tokens(text) == _regex_tokens(text)
    cleaned = clean_text(text)
    assert tokens(cleaned) == _regex_tokens(cleaned)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_clean_text_is_idempotent_and_trimmed(raw: str) -> None:
    once = clean_text(raw)
    assert clean_text(once) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", ["hello", "world"]),
        ("GPT-4o: 3.5x faster", ["gpt", "4o", "3", "5x", "faster"]),
        ("Straße ÉTÉ", ["strasse", "été"]),  # casefold, not lower
        ("snake_case stays", ["snake_case", "stays"]),
        ("  ...  ", []),
    ],
)
def test_tokens(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


TITLE = "Sparse Routing for Tiny Language Models"
ABSTRACT = "We route tokens & experts sparsely. It is 3x faster than dense baselines."


@pytest.mark.parametrize(
    ("title", "abstract"),
    [
        (TITLE.upper(), ABSTRACT),
        ("  Sparse   Routing\tfor Tiny Language Models ", ABSTRACT.replace(" ", "  ")),
        (TITLE, ABSTRACT.replace("&", "&amp;amp;")),
        ("Sparse Routing for Tiny Language\u200b Models", ABSTRACT.replace("3x", "３x")),
        (TITLE + ".", ABSTRACT.rstrip(".")),  # punctuation is not identity
    ],
)
def test_content_hash_ignores_noise(title: str, abstract: str) -> None:
    reference = content_hash(clean_text(TITLE), clean_text(ABSTRACT))
    assert content_hash(clean_text(title), clean_text(abstract)) == reference


@pytest.mark.parametrize(
    ("title", "abstract"),
    [
        ("Sparse Routing for Tiny Language Modles", ABSTRACT),
        (TITLE, ABSTRACT.replace("3x", "4x")),
        (TITLE, ABSTRACT.replace("sparsely", "sparsly")),
        (ABSTRACT, TITLE),  # title and abstract are not interchangeable
        ("Sparse Routing for Tiny Language", "Models " + ABSTRACT),  # nor is the boundary
    ],
)
def test_content_hash_sees_a_typo(title: str, abstract: str) -> None:
    reference = content_hash(clean_text(TITLE), clean_text(ABSTRACT))
    assert content_hash(clean_text(title), clean_text(abstract)) != reference


def test_content_hash_shape() -> None:
    digest = content_hash(TITLE, ABSTRACT)
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert normalized_text("A b", "C, d!") == "a b\nc d"


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        ("Code: https://github.com/acme/tiny.", ("https://github.com/acme/tiny",)),
        (
            "see https://acme.ai/x, https://acme.ai/y; and http://a.b/c!?",
            (
                "https://acme.ai/x",
                "https://acme.ai/y",
                "http://a.b/c",
            ),
        ),
        (
            "(https://github.com/acme/tiny) and [https://acme.ai/demo]",
            (
                "https://github.com/acme/tiny",
                "https://acme.ai/demo",
            ),
        ),
        ('"https://q.io/a" <https://q.io/b>', ("https://q.io/a", "https://q.io/b")),
        (
            "https://b.io/2 then https://a.io/1 then https://b.io/2. again https://a.io/1",
            ("https://b.io/2", "https://a.io/1"),  # first appearance order, no duplicates
        ),
        (
            "keep https://x.org/v1.2/file.tar.gz?q=1&r=2#frag ok",
            ("https://x.org/v1.2/file.tar.gz?q=1&r=2#frag",),
        ),
        ("HTTPS://GitHub.com/Acme/Repo", ("HTTPS://GitHub.com/Acme/Repo",)),
        ("short http://a works", ("http://a",)),
        ("nothing after https:// or http://. here", ()),
        ("no links at all, github.com/acme/tiny", ()),
    ],
)
def test_code_urls(text: str, urls: tuple[str, ...]) -> None:
    assert code_urls(text) == urls
