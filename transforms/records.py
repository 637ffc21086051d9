"""The two things a digest dump turns into: parsed records and dead letters.

Both are frozen dataclasses so they pickle cheaply between Beam stages and compare by value
in tests. Columns added by later stages (clusters, embeddings, tags) live on ``CorpusRow``
dicts built in :mod:`transforms.schema`, never on these.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EXCERPT_CHARS = 200


def make_record_id(source_file: str, record_index: int) -> str:
    """Stable id of the ``record_index``-th record slot of ``source_file`` (16 hex chars).

    It depends only on where the record stands, so re-running the same input gives the same
    ids whatever else changed, and two copies of one paper in different files never share one.
    """
    digest = hashlib.sha256(f"{source_file}\x1f{record_index}".encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Record:
    """One title + abstract pair parsed from a dump."""

    record_id: str
    source_file: str
    record_index: int
    digest_date: dt.date | None
    title: str
    abstract: str
    content_hash: str
    code_urls: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Record:
        """The Record behind a ``records`` table row (extra columns are ignored)."""
        return cls(
            record_id=row["record_id"],
            source_file=row["source_file"],
            record_index=row["record_index"],
            digest_date=row["digest_date"],
            title=row["title"],
            abstract=row["abstract"],
            content_hash=row["content_hash"],
            code_urls=tuple(row["code_urls"] or ()),
        )


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not become a record, with the reason and a bounded excerpt.

    ``record_index`` is set when the input occupied a record slot (a title without abstract,
    an abstract without title) and ``None`` for file-level failures (unreadable, binary, empty).
    """

    source_file: str
    record_index: int | None
    reason: str
    excerpt: str

    @classmethod
    def of(cls, source_file: str, record_index: int | None, reason: str, raw: str) -> DeadLetter:
        return cls(source_file, record_index, reason, raw[:EXCERPT_CHARS])
