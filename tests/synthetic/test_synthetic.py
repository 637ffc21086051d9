"""Tests of the synthetic digest generator (pure Python, no Beam).

The generated dumps are the ground truth of every dedup benchmark, so these tests pin down
what the benchmarks rely on: byte-level determinism, exact counts, the two real page layouts,
ground truth that matches the files, and similarity bands that make "same paper" and
"different paper" unambiguous.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from itertools import combinations, islice
from pathlib import Path

import pytest

from beam_jobs.synthetic import (
    COMPACT_HEADER,
    NEAR_DUP_CLASSES,
    SPACED_HEADER,
    TOPICS,
    GeneratorConfig,
    distinct_papers,
    file_name,
    generate,
    jaccard,
    make_paper,
    normalize,
    read_ground_truth,
    read_slots,
    record_text,
    shingle_jaccard,
    shingles,
    split_sentences,
)
from beam_jobs.synthetic import vocabulary as V
from transforms.text import code_urls

SEEDS_DIR = Path(os.environ.get("DIGESTFLOW_SEEDS", "/work/shared/seeds"))
REPO_ROOT = Path(__file__).resolve().parents[2]

# One corpus with every variant, both layouts, all compressions and a CRLF/BOM page.
MIXED = GeneratorConfig(
    records=1200,
    seed=11,
    records_per_file=100,
    exact_dup_rate=0.15,
    near_dup_rate=0.24,
    revision_rate=0.05,
    malformed_rate=0.03,
    compress="mixed",
)


# --------------------------------------------------------------------------------------------
# An independent reader (does not use the module's read_slots, so it can check it).
# --------------------------------------------------------------------------------------------


def decode(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".bz2":
        data = bz2.decompress(data)
    return data.decode("utf-8-sig").replace("\r\n", "\n")


_DATE = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2}$")
_HEADERS = {h.casefold() for h in SPACED_HEADER + COMPACT_HEADER}


def raw_content_lines(text: str) -> list[str]:
    """Content lines with their own whitespace kept (perturbations live there)."""
    lines = []
    for line in text.split("\n"):
        if not line.strip() or line.strip().casefold() in _HEADERS or _DATE.match(line):
            continue
        if line.startswith("Subscribe") and len(line) > len("Subscribe"):
            line = line[len("Subscribe") :]
        lines.append(line)
    return lines


def is_title(line: str) -> bool:
    return len(line.strip()) < 250


def slots_of(text: str) -> list[tuple[str, str | None]]:
    slots: list[tuple[str, str | None]] = []
    for line in raw_content_lines(text):
        if is_title(line):
            slots.append((line, None))
        else:
            assert slots and slots[-1][1] is None, "abstract without a title"
            slots[-1] = (slots[-1][0], line)
    return slots


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    summary = generate(out, MIXED)
    truth = read_ground_truth(summary.ground_truth)
    texts = {Path(f).name: decode(Path(f)) for f in summary.files}
    slots = {(name, i): s for name, text in texts.items() for i, s in enumerate(slots_of(text))}
    return out, summary, truth, texts, slots


@pytest.fixture(scope="module")
def papers():
    return list(islice(distinct_papers(0), 1500))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


# --------------------------------------------------------------------------------------------
# Config, determinism, counts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"records": 0},
        {"records_per_file": 0},
        {"exact_dup_rate": -0.1},
        {"near_dup_rate": 1.5},
        {"exact_dup_rate": 0.5, "near_dup_rate": 0.3, "malformed_rate": 0.2},
        {"compact_layout_share": 2.0},
        {"compress": "zip"},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        GeneratorConfig(**kwargs)


def test_same_seed_gives_byte_identical_output(tmp_path, mixed):
    out, *_ = mixed
    generate(tmp_path / "again", MIXED)
    assert tree_bytes(tmp_path / "again") == tree_bytes(out)


def test_output_does_not_depend_on_the_process(tmp_path, mixed):
    """No str-hash or set ordering may leak into the output: rerun under another hash seed."""
    out, *_ = mixed
    code = (
        "import sys, datetime\n"
        "from beam_jobs.synthetic import GeneratorConfig, generate\n"
        f"generate(sys.argv[1], GeneratorConfig(**{MIXED.__dict__!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "other")],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert tree_bytes(tmp_path / "other") == tree_bytes(out)


def test_different_seed_gives_different_papers(tmp_path):
    config = GeneratorConfig(records=50, seed=1, records_per_file=50)
    a = generate(tmp_path / "a", config)
    b = generate(tmp_path / "b", GeneratorConfig(records=50, seed=2, records_per_file=50))
    assert Path(a.files[0]).read_bytes() != Path(b.files[0]).read_bytes()


def test_counts_match_config(mixed):
    out, summary, truth, texts, slots = mixed
    assert summary.records == MIXED.records == len(truth) == len(slots)
    assert len(summary.files) == math.ceil(MIXED.records / MIXED.records_per_file)
    per_file = Counter(row["source_file"] for row in truth)
    assert all(n == MIXED.records_per_file for n in per_file.values())

    variants = Counter(row["variant"] for row in truth)
    assert variants["exact"] == math.floor(MIXED.records * MIXED.exact_dup_rate)
    assert variants["revision"] == math.floor(MIXED.records * MIXED.revision_rate)
    assert variants["missing_abstract"] == math.floor(MIXED.records * MIXED.malformed_rate)
    near = [variants[c] for c in NEAR_DUP_CLASSES]
    assert sum(near) == math.floor(MIXED.records * MIXED.near_dup_rate)
    assert max(near) - min(near) <= 1, "near-duplicate classes are drawn uniformly"

    assert summary.malformed == variants["missing_abstract"]
    complete = {row["paper_id"] for row in truth if row["variant"] != "missing_abstract"}
    assert summary.distinct_papers == variants["original"] == len(complete)


def test_last_file_holds_the_remainder(tmp_path):
    summary = generate(tmp_path, GeneratorConfig(records=250, records_per_file=100))
    counts = Counter(row["source_file"] for row in read_ground_truth(tmp_path))
    assert [counts[Path(f).name] for f in summary.files] == [100, 100, 50]


# --------------------------------------------------------------------------------------------
# Files: names, compression, layouts
# --------------------------------------------------------------------------------------------


def test_file_names_dates_and_compression(mixed):
    out, summary, *_ = mixed
    suffixes = ["", ".gz", ".bz2"]
    for k, path in enumerate(map(Path, summary.files)):
        date = MIXED.start_date + dt.timedelta(days=k)
        assert path.name == f"digest_{date.isoformat()}.txt{suffixes[k % 3]}"
        assert path.name == file_name(MIXED, k)
    gz = next(Path(f) for f in summary.files if f.endswith(".gz"))
    bz = next(Path(f) for f in summary.files if f.endswith(".bz2"))
    with gzip.open(gz, "rt", encoding="utf-8-sig") as handle:
        assert "trending papers" in handle.read()
    with bz2.open(bz, "rt", encoding="utf-8-sig") as handle:
        assert "trending papers" in handle.read()
    assert gz.read_bytes()[4:8] == b"\0\0\0\0", "gzip mtime must be zeroed for determinism"


@pytest.mark.parametrize("compress", ["gz", "bz2"])
def test_single_compression(tmp_path, compress):
    summary = generate(
        tmp_path, GeneratorConfig(records=30, records_per_file=10, compress=compress)
    )
    assert all(f.endswith(f".txt.{compress}") for f in summary.files)
    assert all(len(slots_of(decode(Path(f)))) == 10 for f in summary.files)


def spaced_structure_ok(text: str) -> None:
    lines = text.split("\n")
    assert lines[:8] == [SPACED_HEADER[0], "", SPACED_HEADER[1], "", SPACED_HEADER[2], "",
                         SPACED_HEADER[3], ""]  # fmt: skip
    assert _DATE.match(lines[8])
    assert all(line == "" for line in lines[1::2]), "every other line is blank"
    assert all(line.strip() for line in lines[0::2]), "content lines are never blank"
    assert not text.endswith("\n")


def compact_structure_ok(text: str) -> None:
    lines = text.split("\n")
    assert tuple(lines[:2]) == COMPACT_HEADER
    assert re.match(r"^Subscribe[^a-z\s]", lines[2]), "Subscribe is glued to the first title"
    assert all(line.strip() for line in lines), "no blank lines"
    assert not text.endswith("\n")


def seed_files() -> list[Path]:
    return sorted(SEEDS_DIR.glob("*.txt")) if SEEDS_DIR.is_dir() else []


def test_layouts_match_the_real_seed_structure():
    """Guards the constants: the real dumps have exactly these headers and blank-line rules."""
    seeds = seed_files()
    if not seeds:
        pytest.skip(f"no real seed dumps in {SEEDS_DIR}")
    kinds = set()
    for path in seeds:
        text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        if text.startswith("new\n"):
            spaced_structure_ok(text)
            kinds.add("spaced")
        else:
            compact_structure_ok(text)
            kinds.add("compact")
    assert kinds == {"spaced", "compact"}


def test_both_layouts_present_and_well_formed(mixed):
    out, summary, truth, texts, _ = mixed
    layouts = Counter()
    for k, name in enumerate(Path(f).name for f in summary.files):
        text = texts[name]
        if text.startswith("new\n"):
            spaced_structure_ok(text)
            date = MIXED.start_date + dt.timedelta(days=k)
            assert text.split("\n")[8] == f"{date:%b} {date.day}"
            layouts["spaced"] += 1
        else:
            compact_structure_ok(text)
            layouts["compact"] += 1
    assert layouts == {"spaced": 6, "compact": 6}


@pytest.mark.parametrize("share,expected", [(0.0, 0), (1.0, 4), (0.25, 1)])
def test_compact_share(tmp_path, share, expected):
    config = GeneratorConfig(records=40, records_per_file=10, compact_layout_share=share)
    summary = generate(tmp_path, config)
    compact = [f for f in summary.files if not decode(Path(f)).startswith("new\n")]
    assert len(compact) == expected


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def test_ground_truth_matches_file_contents(mixed):
    out, summary, truth, texts, slots = mixed
    order = [(Path(f).name, i) for f in summary.files for i in range(MIXED.records_per_file)]
    assert [(r["source_file"], r["record_index"]) for r in truth] == order
    by_slot = {(r["source_file"], r["record_index"]): r for r in truth}
    seen: set[str] = set()
    for row in truth:
        title, abstract = slots[(row["source_file"], row["record_index"])]
        paper = make_paper(MIXED.seed, row["paper_id"])
        assert row["topics"] == list(paper.topics)
        assert (row["paper_type"], row["has_code"]) == (paper.paper_type, paper.has_code)
        if row["variant"] in ("original", "missing_abstract"):
            assert row["copy_of"] is None and row["paper_id"] not in seen
            assert title == paper.title
            assert abstract == (paper.abstract if row["variant"] == "original" else None)
        else:
            source = by_slot[tuple_ref(row["copy_of"])]
            assert source["variant"] == "original" and source["paper_id"] == row["paper_id"]
            assert row["paper_id"] in seen, "a copy comes after its original"
            assert abstract is not None
            if row["variant"] == "exact":
                assert (title, abstract) == slots[tuple_ref(row["copy_of"])]
        seen.add(row["paper_id"])


def tuple_ref(ref: str) -> tuple[str, int]:
    name, index = ref.rsplit("#", 1)
    return name, int(index)


def test_ground_truth_is_json_lines_with_the_documented_keys(mixed):
    out, summary, *_ = mixed
    keys = ["source_file", "record_index", "paper_id", "variant", "copy_of", "topics",
            "paper_type", "has_code"]  # fmt: skip
    with open(summary.ground_truth, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert all(list(row) == keys for row in rows)
    assert all(re.fullmatch(r"p\d{6,}", row["paper_id"]) for row in rows)
    assert read_ground_truth(out) == rows


def test_read_slots_agrees_with_an_independent_reader(mixed):
    out, summary, truth, texts, slots = mixed
    for path in summary.files:
        name = Path(path).name
        expected = [(t.strip(), a.strip() if a else None) for t, a in slots_of(texts[name])]
        assert read_slots(path) == expected


# --------------------------------------------------------------------------------------------
# Papers: shapes, topics, and distinctness
# --------------------------------------------------------------------------------------------


def test_titles_and_abstracts_have_realistic_shapes(papers):
    for paper in papers:
        assert 3 <= len(paper.title.split()) <= 25 and len(paper.title) <= 200
        assert not paper.title.endswith(".") and not re.match(r"[a-z\s]", paper.title)
        assert 450 <= len(paper.abstract) <= 2000
        assert len(split_sentences(paper.abstract)) >= 5
        assert "\n" not in paper.title + paper.abstract and "\r" not in paper.abstract
    assert any(re.search("[\u0370-\u03ff]", p.title) for p in papers), "some Greek letters"
    assert any(": " in p.title for p in papers)


def test_topics_types_and_code_links(papers):
    assert {t for p in papers for t in p.topics} == set(TOPICS)
    assert all(1 <= len(p.topics) <= 3 and len(set(p.topics)) == len(p.topics) for p in papers)
    types = Counter(p.paper_type for p in papers)
    assert set(types) == {"method", "survey", "benchmark"}
    assert types["method"] > types["benchmark"] > types["survey"] > 0
    code_share = sum(p.has_code for p in papers) / len(papers)
    assert 0.12 <= code_share <= 0.30
    for paper in papers:
        linked = "https://" in paper.abstract
        assert linked == paper.has_code
    assert any("github.io" in p.abstract for p in papers)
    surveys = [p for p in papers if p.paper_type == "survey"]
    assert any("Survey" in p.title for p in surveys)


def test_distinct_papers_stay_below_jaccard_0_3(papers):
    """Exact all-pairs word-3-shingle Jaccard on 1500 papers (inverted index, ~1 s)."""
    sets = [shingles(record_text(p.title, p.abstract)) for p in papers]
    postings: dict[tuple, list[int]] = defaultdict(list)
    for i, shingle_set in enumerate(sets):
        for shingle in shingle_set:
            postings[shingle].append(i)
    shared: Counter = Counter()
    for ids in postings.values():
        if len(ids) > 1:
            shared.update(combinations(ids, 2))
    worst = max(
        (inter / (len(sets[a]) + len(sets[b]) - inter), a, b) for (a, b), inter in shared.items()
    )
    assert worst[0] < 0.3, (papers[worst[1]].title, papers[worst[2]].title)
    assert len({p.title for p in papers}) == len(papers)


def test_paper_depends_only_on_seed_and_index():
    assert make_paper(5, "p000042") == make_paper(5, 42)
    assert make_paper(5, 42).title != make_paper(6, 42).title


# --------------------------------------------------------------------------------------------
# Near-duplicates, revisions, malformed slots
# --------------------------------------------------------------------------------------------


def variant_pairs(mixed, variant: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    _, _, truth, _, slots = mixed
    pairs = []
    for row in truth:
        if row["variant"] == variant:
            key = (row["source_file"], row["record_index"])
            pairs.append((slots[tuple_ref(row["copy_of"])], slots[key]))
    assert pairs, f"no {variant} records generated"
    return pairs


def squash(text: str) -> str:
    return " ".join(normalize(text).split())


CLASS_CHECKS = {
    "whitespace": lambda o, v: (
        v != o and all(squash(a) == squash(b) for a, b in zip(o, v, strict=True))
    ),
    "case": lambda o, v: (
        v != o and all(a.casefold() == b.casefold() for a, b in zip(o, v, strict=True))
    ),
    "html": lambda o, v: (
        v != o
        and re.search(r"&\w+;|&#\w+;|\u00a0", v[1]) is not None
        and all(squash(a) == squash(b) for a, b in zip(o, v, strict=True))
    ),
    "typo": lambda o, v: (
        v[0] == o[0]
        and 1 <= sum(a != b for a, b in zip(o[1].split(" "), v[1].split(" "), strict=True)) <= 3
    ),
    "truncate": lambda o, v: (
        v[0] == o[0]
        and o[1].startswith(v[1])
        and len(v[1]) >= 300
        and 0.84 <= len(v[1]) / len(o[1]) <= 0.95
    ),
    "append_link": lambda o, v: (
        v[0] == o[0]
        and v[1].startswith(o[1])
        and re.search(
            r" (Code is available at https://github\.com/[\w-]+/[\w-]+"
            r"|Project page: https://[\w.-]+\.github\.io/[\w/-]*)\.?$",
            v[1],
        )
        is not None
        and len(code_urls(v[1])) == len(code_urls(o[1])) + 1  # a link the abstract lacked
    ),
    "drop_sentence": lambda o, v: (
        v[0] == o[0]
        and len(split_sentences(v[1])) == len(split_sentences(o[1])) - 1
        and set(split_sentences(v[1])) <= set(split_sentences(o[1]))
    ),
    "change_title": lambda o, v: (
        v[1] == o[1] and v[0] != o[0] and len(v[0]) <= 200 and not v[0].endswith(".")
    ),
}


@pytest.mark.parametrize("variant", NEAR_DUP_CLASSES)
def test_near_duplicate_class(mixed, variant):
    """Each class does what it says and stays clearly the same paper (Jaccard >= 0.75)."""
    for original, copy in variant_pairs(mixed, variant):
        assert CLASS_CHECKS[variant](original, copy), (original, copy)
        assert shingle_jaccard(record_text(*original), record_text(*copy)) >= 0.75


def test_whitespace_and_html_variants_differ_only_in_scrape_noise(mixed):
    for variant in ("whitespace", "html", "case"):
        for original, copy in variant_pairs(mixed, variant):
            assert jaccard(shingles(record_text(*original)), shingles(record_text(*copy))) == 1.0


def test_revisions_are_heavy_rewrites_of_the_same_paper(mixed):
    _, _, truth, _, slots = mixed
    for row in truth:
        if row["variant"] != "revision":
            continue
        original = slots[tuple_ref(row["copy_of"])]
        revised = slots[(row["source_file"], row["record_index"])]
        score = shingle_jaccard(record_text(*original), record_text(*revised))
        assert 0.2 <= score <= 0.5, score
        paper = make_paper(MIXED.seed, row["paper_id"])
        assert paper.facts["task"].casefold() in revised[1].casefold()
        if paper.paper_type != "survey":  # surveys have no method name
            assert paper.facts["M"] in revised[1]
        assert 450 <= len(revised[1]) <= 2000


def test_malformed_slots_are_titles_followed_by_a_title_or_eof(mixed):
    _, _, truth, texts, slots = mixed
    malformed = [row for row in truth if row["variant"] == "missing_abstract"]
    assert malformed
    for row in malformed:
        lines = raw_content_lines(texts[row["source_file"]])
        titles = [i for i, line in enumerate(lines) if is_title(line)]
        at = titles[row["record_index"]]
        assert at == len(lines) - 1 or is_title(lines[at + 1])


def test_crlf_bom_pages_when_malformed(mixed):
    out, summary, truth, texts, slots = mixed
    crlf = []
    for path in map(Path, summary.files):
        data = decode_bytes(path)
        if data.startswith(b"\xef\xbb\xbf"):
            assert b"\n" not in data.replace(b"\r\n", b"")
            crlf.append(path.name)
        else:
            assert b"\r" not in data
    assert crlf, "a few pages carry a BOM and CRLF line endings"
    assert all(len(slots_of(texts[name])) == MIXED.records_per_file for name in crlf)


def decode_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".bz2":
        return bz2.decompress(data)
    return data


def test_no_malformed_no_crlf_and_defaults(tmp_path):
    summary = generate(tmp_path, GeneratorConfig(records=300))
    truth = read_ground_truth(summary.ground_truth)
    assert summary.malformed == 0
    # The default sample carries a few revisions, as real digests do (about 1 in 100 slots).
    assert {row["variant"] for row in truth} <= {"original", "exact", "revision", *NEAR_DUP_CLASSES}
    for path in map(Path, summary.files):
        assert b"\r" not in path.read_bytes() and not path.read_bytes().startswith(b"\xef")


# --------------------------------------------------------------------------------------------
# A sample that looks like real digests: method names, listing days, revisions
# --------------------------------------------------------------------------------------------


def _name_pattern() -> re.Pattern[str]:
    """A coined name is recognisable parts joined as the field joins them (FlashDiff, SALT-Seg,
    MoE-Lite, μ-Flow, Heron-VL++), never letters strung together ("IarntreiltV")."""
    parts = {
        *V.NAME_PREFIXES,
        *V.NAME_HEADS,
        *(s for suffixes in V.NAME_SUFFIXES.values() for s in suffixes),
        *V.ACRONYMS,
        *V.MIXED_ACRONYMS,
        *V.NAME_WORDS,
        *V.GREEK,
        *(t.lstrip("-") for t in V.NAME_TAIL_X),  # MoE-Plus
    }
    part = "|".join(map(re.escape, sorted(parts, key=len, reverse=True)))
    tail = "|".join(map(re.escape, sorted({*V.NAME_TAILS, *V.NAME_TAIL_X}, key=len, reverse=True)))
    return re.compile(rf"(?:{part})(?:-?(?:{part}))*(?:{tail})?")


def test_method_names_are_built_from_recognisable_parts(papers):
    pattern = _name_pattern()
    names = [p.facts["M"] for p in papers if p.paper_type == "method"]
    assert len(names) > 500
    odd = [n for n in names if not pattern.fullmatch(n)]
    assert not odd, odd[:10]
    assert pattern.fullmatch("FlashDiff") and not pattern.fullmatch("IarntreiltV")
    # Names vary: no single name on more than 1 % of the papers.
    assert Counter(names).most_common(1)[0][1] <= len(names) // 100


def test_no_two_distinct_papers_share_a_title(papers):
    titles = [p.title.casefold() for p in papers]
    assert len(set(titles)) == len(titles)


def _file_date(name: str) -> dt.date:
    return dt.date.fromisoformat(re.search(r"\d{4}-\d{2}-\d{2}", name).group())


def _listing_days(truth: list[dict]) -> dict[str, list[dt.date]]:
    days: dict[str, set[dt.date]] = defaultdict(set)
    for row in truth:
        days[row["paper_id"]].add(_file_date(row["source_file"]))
    return {pid: sorted(d) for pid, d in days.items()}


@pytest.mark.parametrize(
    ("records", "per_file", "max_days", "window"),
    [(2000, 100, None, 2), (1000, 100, None, 2), (6000, 100, None, 5), (2000, 100, 6, 6)],
)
def test_papers_stay_listed_a_few_consecutive_days(tmp_path, records, per_file, max_days, window):
    config = GeneratorConfig(records=records, records_per_file=per_file, max_listing_days=max_days)
    assert config.listing_days == window
    truth = read_ground_truth(generate(tmp_path, config).ground_truth)
    days = _listing_days(truth)
    spans = [(d[-1] - d[0]).days + 1 for d in days.values()]
    assert max(spans) <= window
    if max_days is None:  # the default: no paper on more than 10 % of the days (at least 2)
        assert max(map(len, days.values())) <= max(2, config.files // 10)
    # Papers do come back: a real share of them is listed on more than one day.
    assert sum(len(d) > 1 for d in days.values()) > len(days) // 10
    if window > 2:
        assert max(map(len, days.values())) > 2


def test_default_sample_has_a_few_revisions(tmp_path):
    truth = read_ground_truth(generate(tmp_path, GeneratorConfig(records=2000)).ground_truth)
    revisions = [row for row in truth if row["variant"] == "revision"]
    assert 10 <= len(revisions) <= 30
    published = {
        r["paper_id"]: _file_date(r["source_file"]) for r in truth if r["variant"] == "original"
    }
    # A v2 is listed no earlier than its v1.
    assert all(_file_date(r["source_file"]) >= published[r["paper_id"]] for r in revisions)


def test_listing_days_validated():
    with pytest.raises(ValueError, match="max_listing_days"):
        GeneratorConfig(max_listing_days=0)
