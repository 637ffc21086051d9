"""The taxonomy file (topics, assignment settings, paper-type rules) and the labelled-examples
file (``--tag_examples``): parsing and validation into plain data; no scoring here."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomy.toml"
SURVEY, BENCHMARK, HAS_CODE = "survey", "benchmark", "has-code"
PAPER_TYPES = (SURVEY, BENCHMARK, HAS_CODE)
_TOPIC_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MIN_EXAMPLES = 3
# The few-shot head (head.py) is calibrated on out-of-fold scores of the examples: every fold
# needs examples to train on and to score, hence at least two examples per fold.
HEAD_FOLDS = 5
MIN_TAG_EXAMPLES = 2 * HEAD_FOLDS


class TaxonomyError(ValueError):
    """The taxonomy file is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    examples: tuple[str, ...]
    threshold: float | None = None

    def prototype_texts(self) -> tuple[str, ...]:
        return (self.description, *self.examples)


@dataclass(frozen=True)
class Assignment:
    """How scores become topics; see :func:`assign_topics`."""

    threshold: float
    margin: float
    max_topics: int


@dataclass(frozen=True)
class Scoring:
    """How a paper is compared with a topic; see :func:`tag_scores`."""

    top_k: int = 3
    center: bool = True


@dataclass(frozen=True)
class PaperTypeRules:
    survey_title: tuple[re.Pattern[str], ...]
    survey_abstract: tuple[re.Pattern[str], ...]
    benchmark_title: tuple[re.Pattern[str], ...]
    benchmark_abstract: tuple[re.Pattern[str], ...]
    benchmark_lead_chars: int
    ignore_urls: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class TagExample:
    """A labelled paper from ``--tag_examples``: ``text`` is embedded with the pipeline's
    text template when it came as title + abstract (see :func:`parse_tag_examples`)."""

    title: str
    abstract: str
    topics: frozenset[str]


@dataclass(frozen=True)
class Taxonomy:
    """The topics and rules of the taxonomy file, plus optional labelled ``examples`` that
    train a linear head on top of the zero-shot scores (see :func:`transforms.enrich.tags.head.fit_tag_head`)."""

    topics: tuple[Topic, ...]
    assignment: Assignment
    rules: PaperTypeRules
    scoring: Scoring = Scoring()
    examples: tuple[TagExample, ...] = ()
    # sha256 of the packaged head file the tagger uses (transforms.enrich.tags.head), if any.
    # Out of the repr (the taxonomy's fingerprint, the prototype cache key): the run settings
    # record it as a setting of its own, so a change names itself.
    packaged_head: str | None = field(default=None, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(topic.name for topic in self.topics)

    def thresholds(self) -> np.ndarray:
        """Per-topic thresholds (the topic's own, else the default), in topic order."""
        default = self.assignment.threshold
        return np.array(
            [default if t.threshold is None else t.threshold for t in self.topics],
            dtype=np.float32,
        )


# --------------------------------------------------------------------------- taxonomy file


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy TOML (default: the packaged ``taxonomy.toml``)."""
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TaxonomyError(f"{path}: taxonomy file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(f"{path}: not valid TOML: {exc}") from exc
    return parse_taxonomy(data, source=str(path))


def parse_taxonomy(data: Mapping[str, Any], source: str = "<taxonomy>") -> Taxonomy:
    """Validate parsed TOML into a :class:`Taxonomy`; every error names ``source`` and entry."""

    def fail(message: str) -> TaxonomyError:
        return TaxonomyError(f"{source}: {message}")

    if data.get("schema_version") != 1:
        raise fail(f"schema_version must be 1, got {data.get('schema_version')!r}")
    assignment = _parse_assignment(data.get("assignment"), fail)
    raw_topics = data.get("topics")
    if not isinstance(raw_topics, Mapping) or not raw_topics:
        raise fail("[topics] must define at least one topic")
    topics = tuple(_parse_topic(name, entry, fail) for name, entry in raw_topics.items())
    clashes = set(t.name for t in topics) & set(PAPER_TYPES)
    if clashes:
        raise fail(f"topic names clash with paper types: {sorted(clashes)}")
    rules = _parse_rules(data.get("paper_types"), fail)
    scoring = _parse_scoring(data.get("scoring", {}), fail)
    unknown = set(data) - {"schema_version", "assignment", "scoring", "topics", "paper_types"}
    if unknown:
        raise fail(f"unknown top-level keys {sorted(unknown)}")
    return Taxonomy(topics=topics, assignment=assignment, rules=rules, scoring=scoring)


def _parse_scoring(raw: Any, fail) -> Scoring:
    if not isinstance(raw, Mapping) or set(raw) - {"top_k", "center"}:
        raise fail("[scoring] may only set top_k (integer >= 0) and center (boolean)")
    top_k, center = raw.get("top_k", Scoring.top_k), raw.get("center", Scoring.center)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise fail(f"[scoring].top_k must be an integer >= 0, got {top_k!r}")
    if not isinstance(center, bool):
        raise fail(f"[scoring].center must be true or false, got {center!r}")
    return Scoring(top_k, center)


def _parse_assignment(raw: Any, fail) -> Assignment:
    if not isinstance(raw, Mapping):
        raise fail("missing [assignment] table (threshold, margin, max_topics)")
    unknown = set(raw) - {"threshold", "margin", "max_topics"}
    if unknown:
        raise fail(f"[assignment] has unknown keys {sorted(unknown)}")
    try:
        threshold, margin, max_topics = raw["threshold"], raw["margin"], raw["max_topics"]
    except KeyError as exc:
        raise fail(f"[assignment] is missing {exc.args[0]!r}") from exc
    _check_score("[assignment].threshold", threshold, fail)
    if not isinstance(margin, int | float) or isinstance(margin, bool) or not 0 <= margin <= 2:
        raise fail(f"[assignment].margin must be a number in [0, 2], got {margin!r}")
    if not isinstance(max_topics, int) or isinstance(max_topics, bool) or max_topics < 1:
        raise fail(f"[assignment].max_topics must be an integer >= 1, got {max_topics!r}")
    return Assignment(float(threshold), float(margin), max_topics)


def _check_score(where: str, value: Any, fail) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not -1 <= value <= 1:
        raise fail(f"{where} must be a cosine in [-1, 1], got {value!r}")


def _parse_topic(name: str, entry: Any, fail) -> Topic:
    where = f"[topics.{name}]"
    if not _TOPIC_NAME.match(name):
        raise fail(f"{where}: topic names are lowercase words joined by '-'")
    if not isinstance(entry, Mapping):
        raise fail(f"{where} must be a table")
    unknown = set(entry) - {"description", "examples", "threshold"}
    if unknown:
        raise fail(f"{where} has unknown keys {sorted(unknown)}")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail(f"{where}.description must be a non-empty string")
    examples = entry.get("examples")
    if (
        not isinstance(examples, list)
        or len(examples) < MIN_EXAMPLES
        or not all(isinstance(e, str) and e.strip() for e in examples)
    ):
        raise fail(f"{where}.examples must list at least {MIN_EXAMPLES} non-empty strings")
    threshold = entry.get("threshold")
    if threshold is not None:
        _check_score(f"{where}.threshold", threshold, fail)
        threshold = float(threshold)
    return Topic(name, description.strip(), tuple(e.strip() for e in examples), threshold)


def _parse_rules(raw: Any, fail) -> PaperTypeRules:
    if not isinstance(raw, Mapping):
        raise fail("missing [paper_types] tables (survey, benchmark, has-code)")
    expected = {
        SURVEY: ("title_patterns", "abstract_patterns"),
        BENCHMARK: ("title_patterns", "abstract_patterns"),
        HAS_CODE: ("ignore_urls",),
    }
    unknown = set(raw) - set(expected)
    if unknown:
        raise fail(f"[paper_types] has unknown tables {sorted(unknown)}")
    lead = raw.get(BENCHMARK, {}).get("abstract_lead_chars", 300)
    if not isinstance(lead, int) or isinstance(lead, bool) or lead < 1:
        raise fail(f"[paper_types.benchmark].abstract_lead_chars must be >= 1, got {lead!r}")
    compiled: dict[tuple[str, str], tuple[re.Pattern[str], ...]] = {}
    for kind, keys in expected.items():
        table = raw.get(kind)
        if not isinstance(table, Mapping):
            raise fail(f"missing [paper_types.{kind}] table")
        for key in keys:
            compiled[kind, key] = _compile_patterns(f"[paper_types.{kind}].{key}", table, key, fail)
    return PaperTypeRules(
        survey_title=compiled[SURVEY, "title_patterns"],
        survey_abstract=compiled[SURVEY, "abstract_patterns"],
        benchmark_title=compiled[BENCHMARK, "title_patterns"],
        benchmark_abstract=compiled[BENCHMARK, "abstract_patterns"],
        benchmark_lead_chars=lead,
        ignore_urls=compiled[HAS_CODE, "ignore_urls"],
    )


def _compile_patterns(where: str, table: Mapping, key: str, fail) -> tuple[re.Pattern[str], ...]:
    patterns = table.get(key)
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise fail(f"{where} must be a list of regular expressions")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise fail(f"{where}: bad regular expression {pattern!r}: {exc}") from exc
    return tuple(compiled)


# --------------------------------------------------------------------------- tag examples file


def parse_tag_examples(
    lines: Iterable[str], names: Sequence[str], source: str = "<examples>"
) -> tuple[TagExample, ...]:
    """Labelled examples from JSON lines: ``tags`` (or ``topics``: a list of topic names) and
    either ``title`` + ``abstract`` or ``text``. Paper types (survey, benchmark, has-code) are
    ignored, rules decide them; an unknown tag or an example without a topic is an error
    naming the line. At least :data:`MIN_TAG_EXAMPLES` examples."""
    known = set(names)
    examples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object")
        tags = row.get("tags", row.get("topics"))
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{where}: 'tags' must be a list of topic names")
        unknown = sorted(set(tags) - known - set(PAPER_TYPES))
        topics = frozenset(t for t in tags if t in known)
        if unknown or not topics:
            raise ValueError(f"{where}: unknown tags {unknown} or no topic; topics: {names}")
        title, abstract = row.get("title", ""), row.get("abstract", row.get("text", ""))
        if not isinstance(title, str) or not isinstance(abstract, str) or not abstract.strip():
            raise ValueError(f"{where}: needs 'title' and 'abstract', or 'text' (strings)")
        examples.append(TagExample(title.strip(), abstract.strip(), topics))
    if len(examples) < MIN_TAG_EXAMPLES:
        raise ValueError(f"{source}: {len(examples)} examples; at least {MIN_TAG_EXAMPLES}")
    return tuple(examples)


def load_tag_examples(path: str, taxonomy: Taxonomy) -> Taxonomy:
    """``taxonomy`` with the examples of a JSONL file (local or any Beam file system)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        lines = fh.read().decode("utf-8-sig").splitlines()
    examples = parse_tag_examples(lines, taxonomy.names, source=path)
    return dataclasses.replace(taxonomy, examples=examples)
