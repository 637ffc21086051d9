"""What a paper *names*: the coined terms (camel case, acronyms) it uses as names.

A revision keeps naming its method; two papers on one topic share topic words and cite
common baselines, but rarely both *name* the same thing (see :mod:`.evidence`).
"""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")


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


def coined_names(title: str, abstract: str) -> frozenset[str]:
    """What a paper names, case-folded: the coined terms of its title and those its abstract
    uses at least twice (a passing mention of a baseline is not the paper's name)."""
    in_title = {t.casefold() for t in _TOKEN.findall(title) if is_coined(t)}
    in_abstract = Counter(t.casefold() for t in _TOKEN.findall(abstract) if is_coined(t))
    return frozenset(in_title | {t for t, n in in_abstract.items() if n >= 2})
