"""What a paper *names*: the coined terms (camel case, acronyms) and the title that the
revision merge blocks canonicals by, and the ``paper_names`` rows an update looks them up in.

A revision keeps naming its method; two papers on one topic share topic words and cite
common baselines, but rarely both *name* the same thing (see :mod:`.rule`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from transforms.dedup.clusters import SEMANTIC
from transforms.text import tokens

_TOKEN = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")


TITLE_NAME_PREFIX = "title:"


def _coined_part(part: str) -> bool:
    if len(part) < 3:
        return False
    has_lower = any(c.islower() for c in part)
    if has_lower:
        return any(c.isupper() for c in part[1:])  # camel case: FlowPrune, rMD17, DeiT
    return sum(c.isupper() for c in part) >= 2  # acronym: UPGD, QM9, LDM3D (not 3D, 128)


def is_coined(token: str) -> bool:
    """A term someone made up: camel case or an acronym, in any hyphen-separated part
    (``PointVQA``, ``GPT-4``), not a capitalized word (``Training-Free``, ``Text-to-3D``)."""
    return any(_coined_part(part) for part in token.split("-"))


def paper_names(title: str, abstract: str) -> frozenset[str]:
    """What a paper names, case-folded: coined terms of its title, coined terms used at
    least twice in its abstract, and its whole title (``title:`` + title tokens)."""
    in_title = {t.casefold() for t in _TOKEN.findall(title) if is_coined(t)}
    in_abstract = Counter(t.casefold() for t in _TOKEN.findall(abstract) if is_coined(t))
    repeated = {t for t, n in in_abstract.items() if n >= 2}
    names = in_title | repeated
    title_tokens = tokens(title)
    if title_tokens:
        names.add(TITLE_NAME_PREFIX + " ".join(title_tokens))
    return frozenset(names)


def names_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``paper_names`` row of an enriched records-table row: what an update blocks new
    canonicals against without reading the texts of the corpus again."""
    was_canonical = row["is_canonical"] or row["dup_kind"] == SEMANTIC
    candidate = bool(was_canonical and row["embedding"] is not None)
    return names_row_of(row["record_id"], row["title"], row["abstract"], candidate)


def names_row_of(record_id: str, title: str, abstract: str, candidate: bool) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "names": sorted(paper_names(title, abstract)),
        "candidate": candidate,
    }
