"""Writing a corpus: record slots get a variant with exact cumulative quotas, a small
:class:`_Corpus` state picks and regenerates the papers they copy, pages are streamed to disk
and every slot gets a row in ``ground_truth.jsonl`` (:func:`generate`, :func:`read_ground_truth`)."""

from __future__ import annotations

import json
import math
import random
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from beam_jobs.synthetic.config import GeneratorConfig
from beam_jobs.synthetic.dumps import (
    PageWriter,
    file_compression,
    file_name,
    is_compact,
    is_crlf_page,
    open_output,
    page_date,
)
from beam_jobs.synthetic.papers import Paper, distinct_papers, make_paper
from beam_jobs.synthetic.perturbations import NEAR_DUP_CLASSES, PERTURBATIONS, revise

GROUND_TRUTH_NAME = "ground_truth.jsonl"
VARIANTS: tuple[str, ...] = (
    ("original", "exact") + NEAR_DUP_CLASSES + ("revision", "missing_abstract")
)
# Which earlier paper a re-scrape copies, as daily digests repeat papers (the real seed dumps:
# ~89 % of papers on one day, the rest on 2-4 days, never twice on one page). A paper stays
# listed for a few consecutive days at most (config.listing_days) and once a day, so copy counts
# stay small: on a page after the first, this share of re-scrapes copies a paper first listed
# on the same page (once each); the others copy a paper of an earlier page of the window,
# favouring papers listed the day before (still trending; weight halves per day of age) over
# papers coming back after a gap.
_SAME_DAY_SHARE = 0.25
_AGE_DECAY = 0.5
_COMEBACK_WEIGHT = 0.15
_CACHE_PAPERS = 4096


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote. ``distinct_papers`` counts papers with a complete record."""

    files: list[str]
    records: int
    distinct_papers: int
    malformed: int
    ground_truth: str


def _slot_labels(
    config: GeneratorConfig, start: int, n: int, rng: random.Random, near_counter: int
) -> list[str]:
    """Variants of slots [start, start + n): exact cumulative quotas, shuffled within the file."""
    end = start + n

    def quota(rate: float) -> int:
        return math.floor(end * rate + 1e-9) - math.floor(start * rate + 1e-9)

    labels: list[str] = []
    labels += ["exact"] * quota(config.exact_dup_rate)
    offset = config.seed % len(NEAR_DUP_CLASSES)
    for i in range(quota(config.near_dup_rate)):
        labels.append(NEAR_DUP_CLASSES[(near_counter + i + offset) % len(NEAR_DUP_CLASSES)])
    labels += ["revision"] * quota(config.revision_rate)
    labels += ["missing_abstract"] * quota(config.malformed_rate)
    labels += ["original"] * (n - len(labels))
    rng.shuffle(labels)
    if start == 0 and labels[0] != "original":  # the corpus must open with a new paper
        j = labels.index("original")
        labels[0], labels[j] = labels[j], labels[0]
    return labels


class _Corpus:
    """Generation state: the pool of emitted papers (a few ints each) and an LRU of texts."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._papers = distinct_papers(config.seed)
        self.pool_index = array("q")
        self.pool_file = array("l")
        self.pool_slot = array("l")
        self.pool_last_day = array("l")  # the last page the paper was listed on
        self.file_names: list[str] = []
        self.near_counter = 0
        self.malformed = 0
        self._cache: OrderedDict[int, Paper] = OrderedDict()
        self._window = config.listing_days
        self._first_listed: dict[int, list[int]] = {}  # page -> pool positions first seen there
        self._day = -1
        self._same_day: list[int] = []
        self._earlier: list[tuple[float, list[int]]] = []  # (weight per paper, positions)

    def paper(self, index: int) -> Paper:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        paper = make_paper(self.config.seed, index)
        self._cache[index] = paper
        if len(self._cache) > _CACHE_PAPERS:
            self._cache.popitem(last=False)
        return paper

    def new_paper(self) -> Paper:
        paper = next(self._papers)
        self._cache[paper.index] = paper
        if len(self._cache) > _CACHE_PAPERS:
            self._cache.popitem(last=False)
        return paper

    def start_day(self, k: int) -> None:
        """Candidates of page ``k``'s re-scrapes: papers first listed on the window's pages."""
        self._day = k
        self._first_listed[k] = []
        self._first_listed.pop(k - self._window, None)
        self._same_day = []
        self._earlier = []
        last = self.pool_last_day
        for age in range(1, min(self._window, k + 1)):
            positions = self._first_listed[k - age]
            weight = _AGE_DECAY ** (age - 1)
            trending = [pos for pos in positions if last[pos] == k - 1]
            self._earlier.append((weight, trending))
            if age > 1:
                comeback = [pos for pos in positions if last[pos] != k - 1]
                self._earlier.append((weight * _COMEBACK_WEIGHT, comeback))

    def add_original(self, paper: Paper, k: int, idx: int) -> None:
        pos = len(self.pool_index)
        self.pool_index.append(paper.index)
        self.pool_file.append(k)
        self.pool_slot.append(idx)
        self.pool_last_day.append(k)
        self._first_listed[k].append(pos)
        self._same_day.append(pos)

    def pick_earlier(self, rng: random.Random) -> int | None:
        """Pool position of a paper to re-scrape today, or None when every candidate has
        been listed today already (each candidate list is drawn without replacement)."""
        total = sum(weight * len(positions) for weight, positions in self._earlier)
        same = self._same_day
        if same and (total == 0.0 or rng.random() < _SAME_DAY_SHARE):
            pos = _take(same, rng)
        elif total > 0.0:
            r = rng.random() * total
            chosen: list[int] = []
            for weight, positions in self._earlier:
                if positions:
                    chosen = positions  # the last non-empty list absorbs rounding
                    r -= weight * len(positions)
                    if r < 0.0:
                        break
            pos = _take(chosen, rng)
        else:
            return None
        self.pool_last_day[pos] = self._day
        return pos

    def pick_any_recent(self, rng: random.Random) -> int:
        """Fallback when the rates leave no candidate: any paper of the window (or the last)."""
        positions = [pos for day in sorted(self._first_listed) for pos in self._first_listed[day]]
        if not positions:
            return len(self.pool_index) - 1
        pos = positions[int(rng.random() * len(positions))]
        self.pool_last_day[pos] = self._day
        return pos

    def slot(
        self, label: str, rng: random.Random, k: int, idx: int, pos: int | None = None
    ) -> tuple[str, str | None, dict]:
        """Title, abstract (None when malformed) and ground-truth row of one record slot
        (``pos``: for a re-scrape, the pool position of the paper it copies)."""
        copy_of = None
        if label in ("original", "missing_abstract"):
            paper = self.new_paper()
            title, abstract = paper.title, paper.abstract
            if label == "original":
                self.add_original(paper, k, idx)
            else:
                abstract = None
                self.malformed += 1
        else:
            assert pos is not None
            paper = self.paper(self.pool_index[pos])
            copy_of = f"{self.file_names[self.pool_file[pos]]}#{self.pool_slot[pos]}"
            if label == "exact":
                title, abstract = paper.title, paper.abstract
            elif label == "revision":
                title, abstract = revise(paper, rng)
            else:
                title, abstract = PERTURBATIONS[label](paper.title, paper.abstract, rng, paper)
        row = {
            "source_file": self.file_names[k],
            "record_index": idx,
            "paper_id": paper.paper_id,
            "variant": label,
            "copy_of": copy_of,
            "topics": list(paper.topics),
            "paper_type": paper.paper_type,
            "has_code": paper.has_code,
        }
        return title, abstract, row


def _take(positions: list[int], rng: random.Random) -> int:
    """Remove and return a random element (swap with the last: O(1), order irrelevant)."""
    i = int(rng.random() * len(positions))
    positions[i], positions[-1] = positions[-1], positions[i]
    return positions.pop()


def _copied_paper(corpus: _Corpus, labels: list[str], idx: int, rng: random.Random) -> int | None:
    """Pool position a re-scrape slot copies, or None after swapping the slot with a later
    original of the page (when no paper may be listed again today, e.g. early on the first
    page). The page keeps its exact variant counts either way."""
    pos = corpus.pick_earlier(rng)
    if pos is not None:
        return pos
    later = next((j for j in range(idx + 1, len(labels)) if labels[j] == "original"), None)
    if later is not None:
        labels[idx], labels[later] = labels[later], labels[idx]
        return None
    return corpus.pick_any_recent(rng)


def generate(out_dir: str | Path, config: GeneratorConfig) -> GenerationSummary:
    """Write ``config.files`` digest pages and ``ground_truth.jsonl`` into ``out_dir``.

    Pages are streamed one at a time; files of the same names are replaced, other files in
    ``out_dir`` are left alone (whether a non-empty directory is acceptable is the CLI's call).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = _Corpus(config)
    files: list[str] = []
    truth_path = out / GROUND_TRUTH_NAME
    with open(truth_path, "w", encoding="utf-8", newline="\n") as truth:
        for k in range(config.files):
            name = file_name(config, k)
            corpus.file_names.append(name)
            path = out / name
            files.append(str(path))
            start = k * config.records_per_file
            n = min(config.records_per_file, config.records - start)
            rng = random.Random(f"digestflow/{config.seed}/file/{k}")
            labels = _slot_labels(config, start, n, rng, corpus.near_counter)
            corpus.near_counter += sum(1 for x in labels if x in PERTURBATIONS)
            crlf = is_crlf_page(config, k)
            date = page_date(config, k)
            corpus.start_day(k)
            with open_output(path, file_compression(config, k)) as stream:
                page = PageWriter(stream, is_compact(config, k), date, crlf=crlf, bom=crlf)
                rows = []
                for idx in range(len(labels)):
                    pos = None
                    if labels[idx] not in ("original", "missing_abstract"):
                        pos = _copied_paper(corpus, labels, idx, rng)
                    title, abstract, row = corpus.slot(labels[idx], rng, k, idx, pos)
                    page.line(title)
                    if abstract is not None:
                        page.line(abstract)
                    rows.append(json.dumps(row))
                page.close()
            truth.write("\n".join(rows) + "\n")
    return GenerationSummary(
        files=files,
        records=config.records,
        distinct_papers=len(corpus.pool_index),
        malformed=corpus.malformed,
        ground_truth=str(truth_path),
    )


def read_ground_truth(path: str | Path) -> list[dict]:
    """All ground-truth rows of a generated corpus (``path``: the jsonl or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / GROUND_TRUTH_NAME
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
