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
from beam_jobs.synthetic.papers import Paper, make_paper
from beam_jobs.synthetic.perturbations import NEAR_DUP_CLASSES, PERTURBATIONS, revise

GROUND_TRUTH_NAME = "ground_truth.jsonl"
VARIANTS: tuple[str, ...] = (
    ("original", "exact") + NEAR_DUP_CLASSES + ("revision", "missing_abstract")
)
# Re-scrapes favour recent papers, as daily digests do: this share is drawn with an
# exponential look-back of about one page of records, the rest uniformly from all earlier papers.
_RECENT_SHARE = 0.7
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
        self.next_index = 0
        self.pool_index = array("q")
        self.pool_file = array("l")
        self.pool_slot = array("l")
        self.file_names: list[str] = []
        self.near_counter = 0
        self.malformed = 0
        self._cache: OrderedDict[int, Paper] = OrderedDict()
        self._recent_scale = max(10.0, float(config.records_per_file))

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
        paper = self.paper(self.next_index)
        self.next_index += 1
        return paper

    def pick_earlier(self, rng: random.Random) -> int:
        """Position in the pool of a paper to re-scrape: recent papers are more likely."""
        n = len(self.pool_index)
        if rng.random() < _RECENT_SHARE:
            back = int(rng.expovariate(1.0 / self._recent_scale))
            return max(0, n - 1 - back)
        return rng.randrange(n)

    def slot(
        self, label: str, rng: random.Random, k: int, idx: int
    ) -> tuple[str, str | None, dict]:
        """Title, abstract (None when malformed) and ground-truth row of one record slot."""
        copy_of = None
        if label in ("original", "missing_abstract"):
            paper = self.new_paper()
            title, abstract = paper.title, paper.abstract
            if label == "original":
                self.pool_index.append(paper.index)
                self.pool_file.append(k)
                self.pool_slot.append(idx)
            else:
                abstract = None
                self.malformed += 1
        else:
            pos = self.pick_earlier(rng)
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
            with open_output(path, file_compression(config, k)) as stream:
                page = PageWriter(stream, is_compact(config, k), date, crlf=crlf, bom=crlf)
                rows = []
                for idx, label in enumerate(labels):
                    title, abstract, row = corpus.slot(label, rng, k, idx)
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
