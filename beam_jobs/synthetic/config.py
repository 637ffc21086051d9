"""What to generate: :class:`GeneratorConfig` (corpus size, seed, page size, the rates of
every slot variant, how many days a paper stays listed, layout share, compression, first
date), validated on construction."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

COMPRESSIONS: tuple[str | None, ...] = (None, "gz", "bz2", "mixed")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Rates are fractions of *record slots* (they must sum to <= 0.95).

    ``max_listing_days``: the most digest days (pages) one paper is listed on. ``None`` (the
    default) is 10 % of the corpus's days, at least 2 and at most 5 (:attr:`listing_days`);
    ask for more to get longer-running papers. A paper's listings all fall within that many
    consecutive days, once a day, plus at most one same-day re-scrape on its first day, as
    long as the duplicate rates leave room for it (very high rates do exceed it).
    """

    records: int = 2000
    seed: int = 0
    records_per_file: int = 200
    exact_dup_rate: float = 0.15
    near_dup_rate: float = 0.15
    revision_rate: float = 0.01
    malformed_rate: float = 0.0
    max_listing_days: int | None = None
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
        if self.max_listing_days is not None and self.max_listing_days < 1:
            raise ValueError(f"max_listing_days must be >= 1, got {self.max_listing_days}")
        if not 0.0 <= self.compact_layout_share <= 1.0:
            raise ValueError(
                f"compact_layout_share must be in [0, 1], got {self.compact_layout_share}"
            )
        if self.compress not in COMPRESSIONS:
            raise ValueError(f"compress must be one of {COMPRESSIONS}, got {self.compress!r}")

    @property
    def files(self) -> int:
        return math.ceil(self.records / self.records_per_file)

    @property
    def listing_days(self) -> int:
        """The most days one paper is listed on (``max_listing_days``, else its default)."""
        if self.max_listing_days is not None:
            return self.max_listing_days
        return min(5, max(2, self.files // 10))
