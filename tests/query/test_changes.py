"""``digestflow report DIR changes``: what an update adds, with known answers.

Handwritten digest days (the papers below are made up for these tests): three days built by a
first run and two ``--incremental`` updates, then a fourth day, added by a third update, that
holds two brand-new papers, exact re-listings of known papers (one with its title's case
changed), a revision (title reworded, a sentence added, a code link added), a near copy with its
last sentence dropped, and a shift of topic (the new papers are about image generation, every
known one about reinforcement learning). The answers below follow from how the days were
written, never from the pipeline's output. Runs use ``--no_embeddings`` except the one that
checks the topic section, whose zero-shot tags are recomputed independently from the Parquet
files with pyarrow.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from beam_jobs.cli.main import main
from beam_jobs.errors import UserError
from beam_jobs.query import catalog
from beam_jobs.query.changes import NO_TAGS, Changes, Section, changes
from beam_jobs.store import commits, versions
from beam_jobs.store.tables import read_table

HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\n"
    "byAK and the research community\n\n"
)
CODE = "https://github.com/example-lab/offline-distill"

# title -> abstract; every abstract is several sentences, so the parser reads it as one
PAPERS = {
    "A": (
        "Curriculum Rewards for Sparse Navigation",
        "Agents that navigate large mazes rarely observe a reward, so their value estimates stay "
        "flat for millions of steps. We propose a curriculum that starts each episode close to "
        "the goal and moves the start outward whenever the success rate passes a fixed level. "
        "The schedule needs no extra network and no hand-made shaping terms. On twelve maze "
        "families the curriculum reaches the goal three times sooner than uniform starts. It "
        "also transfers to a quadruped robot that must walk through a cluttered office floor.",
    ),
    "B": (
        "Offline Policy Distillation with Value Ensembles",
        "Learning a policy from a fixed log of transitions suffers when the policy chooses "
        "actions the log never tried. We distill a conservative student from a teacher trained "
        "on the log, weighting each state by the disagreement of an ensemble of value critics. "
        "States where the critics disagree are imitated closely, while agreed states allow the "
        "student to improve on the teacher. The method matches strong offline baselines on "
        "locomotion logs and beats them on noisy logs collected by several different operators.",
    ),
    "C": (
        "Hierarchical Options for Long Horizon Control",
        "Long manipulation tasks such as assembling furniture need hundreds of coordinated "
        "motions. We learn a small set of temporally extended options together with a manager "
        "policy that picks one option every few seconds. Options are rewarded for reaching "
        "states the manager later finds useful, which keeps them diverse without a separate "
        "diversity bonus. A simulated arm assembles chairs from parts in under ten minutes. "
        "Ablations show that the shared reward is what keeps the options from collapsing.",
    ),
    "D": (
        "Model Based Exploration via Latent Surprise",
        "Exploration bonuses computed on raw pixels reward noise such as flickering screens. We "
        "train a world model in a compact latent space and reward the agent for transitions "
        "the model predicts poorly. Because the latent space ignores details that do not affect "
        "future states, televisions showing random images no longer attract the agent. The "
        "bonus solves hard exploration games that pixel novelty fails on. We release a suite "
        "of distractor environments for measuring robustness to uninformative novelty.",
    ),
    "E": (
        "Multi Agent Credit Assignment by Counterfactual Baselines",
        "When a team of agents shares one reward, each agent struggles to tell whether its own "
        "action helped. We estimate, for every agent, the team return it would have received "
        "had it taken a default action, and use the difference as its advantage. The baseline "
        "is computed by a centralized critic during training only, so execution stays fully "
        "decentralized. Teams of drones learn to herd targets twice as fast as with a shared "
        "advantage. The estimator stays stable with up to sixty cooperating agents.",
    ),
    "F": (
        "Safe Policy Improvement under Action Constraints",
        "Deploying a learned controller on a power grid requires that every action respects "
        "operating limits. We project each proposed action onto the feasible set given by the "
        "current constraints and correct the policy gradient for this projection. The "
        "correction keeps learning unbiased while the projection guarantees safety at every "
        "step. On grid simulators with thousands of buses the method never violates a limit "
        "and recovers the cost of an unconstrained policy within a few percent.",
    ),
    "G": (
        "Cascaded Diffusion for Sharp Texture Synthesis",
        "Diffusion models generate plausible images but blur fine textures such as fabric and "
        "fur. We cascade a low resolution diffusion model with a texture specialist that "
        "denoises small patches conditioned on the coarse image. The specialist is trained on "
        "texture crops only, which makes it cheap to train. Generated images keep sharp "
        "details at four times the base resolution. Human raters prefer our samples over "
        "single stage diffusion samples in most comparisons of photographs of clothing.",
    ),
    "H": (
        "Few Step Image Generation with Consistency Distillation",
        "Sampling from a diffusion model takes dozens of network evaluations per image. We "
        "distill a pretrained text to image diffusion model into a consistency model that maps "
        "any noisy image directly to a clean one. A progressive schedule halves the number of "
        "steps at each stage of distillation. Two step samples reach image quality close to "
        "the teacher at fifty steps. The student runs on a phone and generates a picture in "
        "under a second from a written prompt.",
    ),
}
# the revision of B: title reworded, a sentence added, a code link added
B_REVISED = (
    "Distilling Offline Policies with Ensembles of Value Critics",
    PAPERS["B"][1] + " We also report results on manipulation logs from two real robots, "
    f"and the code is at {CODE}",
)
# a near copy of D with its last sentence dropped
D_SHORT = (PAPERS["D"][0], PAPERS["D"][1].rsplit(" We release", 1)[0])

DAY = {1: dt.date(2026, 3, 2), 2: dt.date(2026, 3, 3), 3: dt.date(2026, 3, 4)}
DAY[4] = dt.date(2026, 3, 5)
LISTED = {  # day -> the (title, abstract) pairs of its digest, in page order
    1: [PAPERS[k] for k in "ABCD"],
    2: [PAPERS[k] for k in "ABE"],
    3: [PAPERS[k] for k in "ACF"],
    4: [
        PAPERS["A"],
        PAPERS["C"],
        (PAPERS["E"][0].upper(), PAPERS["E"][1]),  # case only: an exact copy
        B_REVISED,
        D_SHORT,
        PAPERS["G"],
        PAPERS["H"],
        PAPERS["H"],  # listed twice on one page
    ],
}
# known near copies cluster at the default threshold only narrowly: be generous
FLAGS = ("--threshold=0.6", "--quiet")


def _write_day(directory: Path, day: int) -> Path:
    date = DAY[day]
    body = "".join(f"{title}\n\n{abstract}\n\n" for title, abstract in LISTED[day])
    path = directory / f"digest_{date.isoformat()}.txt"
    path.write_text(HEADER + date.strftime("%b %-d") + "\n\n" + body, encoding="utf-8")
    return path


def _build(directory: Path, *flags: str, snapshot_after_first: Path | None = None) -> Path:
    """Days 1..3 (a first run, two updates), then the update adding day 4: version 4."""
    dumps, out = directory / "dumps", directory / "out"
    dumps.mkdir()
    for day in sorted(LISTED):
        update = ["--incremental"] if day > 1 else []
        argv = ["run", f"--input={_write_day(dumps, day)}", f"--output={out}", *FLAGS, *flags]
        assert main(argv + update) == 0
        if day == 1 and snapshot_after_first is not None:
            shutil.copytree(out, snapshot_after_first)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The output after four days without embeddings, and a copy of it after day 1."""
    directory = tmp_path_factory.mktemp("changes")
    first = directory / "first"
    return _build(directory, "--no_embeddings", snapshot_after_first=first), first


@pytest.fixture(scope="module")
def output(built) -> Path:
    return built[0]


def _section(result: Changes, name: str) -> Section:
    (section,) = [s for s in result.sections if s.name == name]
    return section


def _as_dicts(section: Section) -> list[dict]:
    return [dict(zip(section.columns, row, strict=True)) for row in section.rows]


def _id(output: Path, title: str) -> str:
    """The cluster id of the paper whose canonical has this title."""
    rows = catalog.query(str(output), "SELECT cluster_id FROM papers WHERE title = ?", [title])
    (cluster_id,) = rows[1][0]
    return cluster_id


def test_the_clustering_the_answers_assume(output: Path) -> None:
    """The revision and the shortened copy joined their papers (else nothing below holds)."""
    _, rows = catalog.query(
        str(output),
        "SELECT r.title, r.dup_kind, c.title FROM records r JOIN papers c USING (cluster_id) "
        "WHERE r.digest_date = DATE '2026-03-05' ORDER BY r.source_file, r.record_index",
    )
    assert [(title, kind, canonical) for title, kind, canonical in rows] == [
        (PAPERS["A"][0], "exact", PAPERS["A"][0]),
        (PAPERS["C"][0], "exact", PAPERS["C"][0]),
        (PAPERS["E"][0].upper(), "exact", PAPERS["E"][0]),
        (B_REVISED[0], "near", PAPERS["B"][0]),
        (D_SHORT[0], "near", PAPERS["D"][0]),
        (PAPERS["G"][0], None, PAPERS["G"][0]),
        (PAPERS["H"][0], None, PAPERS["H"][0]),
        (PAPERS["H"][0], "exact", PAPERS["H"][0]),
    ]


def test_an_update_compared_with_the_previous_version(output: Path) -> None:
    result = changes(str(output))
    assert (result.version, result.since) == (4, 3)
    assert [s.name for s in result.sections] == ["new", "revised", "again", "topics"]
    assert [s.title for s in result.sections] == [
        "New papers",
        "New versions of known papers",
        "Papers listed again",
        "Topic share",
    ]
    assert all(s.doc and "\n" not in s.doc for s in result.sections)

    new = _section(result, "new")
    assert new.columns == ["title", "tags", "code_urls", "listings", "first_seen", "cluster_id"]
    assert new.rows == [
        (PAPERS["G"][0], None, [], 1, DAY[4], _id(output, PAPERS["G"][0])),
        (PAPERS["H"][0], None, [], 2, DAY[4], _id(output, PAPERS["H"][0])),
    ]

    revised = _as_dicts(_section(result, "revised"))
    assert [
        (r["title"], r["known_title"], r["what_changed"], r["added_links"], r["dup_kind"])
        for r in revised
    ] == [
        (
            B_REVISED[0],
            PAPERS["B"][0],
            "title reworded, abstract extended, code link added",
            [CODE],
            "near",
        ),
        (D_SHORT[0], PAPERS["D"][0], "abstract shortened", [], "near"),
    ]
    assert [(r["listings"], r["digest_date"]) for r in revised] == [(1, DAY[4])] * 2
    assert [r["cluster_id"] for r in revised] == [
        _id(output, PAPERS["B"][0]),
        _id(output, PAPERS["D"][0]),
    ]
    assert all(0.6 <= r["similarity"] < 1 for r in revised)

    again = _section(result, "again")
    assert again.columns == [
        "title",
        "listings_added",
        "days_in_a_row",
        "days_seen",
        "first_seen",
        "last_seen",
        "cluster_id",
    ]
    # A: days 1-4; C: days 1, 3, 4 (a run of two); E: days 2 and 4 (a run of one)
    assert again.rows == [
        (PAPERS["A"][0], 1, 4, 4, DAY[1], DAY[4], _id(output, PAPERS["A"][0])),
        (PAPERS["C"][0], 1, 2, 3, DAY[1], DAY[4], _id(output, PAPERS["C"][0])),
        (PAPERS["E"][0], 1, 1, 2, DAY[2], DAY[4], _id(output, PAPERS["E"][0])),
    ]

    topics = _section(result, "topics")
    assert topics.rows == [] and topics.note == NO_TAGS
    assert all(s.note == "" for s in result.sections if s.name != "topics")


def test_since_an_older_kept_version_and_the_sql_reports_alone(output: Path) -> None:
    """Each section is a shipped report runnable on its own, with the same rows."""
    result = changes(str(output), since=3)
    assert result == changes(str(output))
    for section in result.sections:
        columns, rows = catalog.report(str(output), f"changes_{section.name}")
        assert (columns, rows) == (section.columns, section.rows)


def test_a_first_run_has_nothing_to_compare_with(built) -> None:
    _, first = built
    result = changes(str(first))
    assert (result.version, result.since) == (1, None)
    new = _section(result, "new")
    assert [(row[0], row[3], row[4]) for row in new.rows] == [
        (PAPERS[k][0], 1, DAY[1]) for k in sorted("ABCD", key=lambda k: PAPERS[k][0])
    ]
    assert all(not s.rows for s in result.sections if s.name != "new")


@pytest.mark.parametrize(
    ("since", "message"),
    [
        (0, "--since 0: versions are numbered from 1; this output keeps versions 3 and 4"),
        (-2, "--since -2: versions are numbered from 1"),
        (
            2,
            "--since 2: version 2 is no longer kept (a run keeps the --keep_versions newest, 2 "
            "by default); "
            "this output keeps versions 3 and 4 (4 is the current one)",
        ),
        (4, "--since 4: not earlier than the current version 4; this output keeps versions 3"),
        (9, "--since 9: not earlier than the current version 4"),
    ],
)
def test_since_must_name_an_earlier_kept_version(output: Path, since: int, message: str) -> None:
    with pytest.raises(UserError) as raised:
        changes(str(output), since=since)
    assert str(raised.value).startswith(message)


def test_a_damaged_or_missing_earlier_snapshot_is_refused(output: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(output, damaged)
    root = Path(damaged) / versions.kept_root(str(damaged), 3)
    # version 4 lists every file of version 3 that holds rows (those it did not change):
    # what only version 3 has is its commit record
    victim = Path(commits.commit_path(str(damaged), 3))
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.raises(versions.DamagedOutput) as raised:
        changes(str(damaged))
    text = str(raised.value)
    assert text.startswith("version 3, the snapshot compared against, is damaged: ")
    assert str(victim) in text and "\n" not in text
    assert main(["report", str(damaged), "changes"]) == 2
    # the current version alone is fine: the other reports still read it
    assert main(["report", str(damaged), "overview"]) == 0

    # the previous version's directory deleted by hand: it held files the current version
    # lists too, so the current version is refused, naming a missing file
    shutil.rmtree(root)
    with pytest.raises(versions.DamagedOutput, match=r"is missing \(listed by .*00000004"):
        changes(str(damaged))


def test_report_changes_cli(output: Path, capsys) -> None:
    assert main(["report", str(output), "changes"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# changes in version 4 (since version 3)\n")
    for title in ("New papers", "New versions of known papers", "Papers listed again"):
        assert f"\n# {title}: " in text
    assert f"# {NO_TAGS}" in text
    assert "title reworded, abstract extended, code link added" in text

    assert main(["report", str(output), "changes", "--since", "3", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["version"], document["since"]) == (4, 3)
    again = document["sections"][2]
    assert again["name"] == "again"
    assert again["rows"][0]["days_in_a_row"] == 4 and again["rows"][0]["last_seen"] == "2026-03-05"

    assert main(["report", str(output), "changes", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert [line for line in sql.splitlines() if line.startswith("-- changes_")] == [
        f"-- changes_{name}: " + catalog.report_summary(f"changes_{name}")
        for name in ("new", "revised", "again", "topics")
    ]

    assert main(["report", str(output), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "\nchanges " in listed and "changes_revised" in listed

    assert main(["report", str(output), "changes", "--since", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("digestflow: error: --since 2: version 2 is no longer kept")
    assert err.count("\n") == 1
    assert main(["report", str(output), "overview", "--since", "3"]) == 2
    assert "--since applies to the changes reports only" in capsys.readouterr().err
    assert main(["report", str(output), "changes", "--since", "x"]) == 2


def test_keep_versions_lets_since_reach_further_back(tmp_path: Path, capsys) -> None:
    """With --keep_versions 3, version 2 (days 1-2) is still there: since it, day 3's paper F
    is new too, and A and C gained a listing on each of days 3 and 4."""
    out = _build(tmp_path, "--no_embeddings", "--keep_versions=3")
    assert catalog.kept_versions(str(out), 4) == [2, 3, 4]
    result = changes(str(out), since=2)
    assert (result.version, result.since) == (4, 2)
    assert [(row[0], row[3], row[4]) for row in _section(result, "new").rows] == [
        (PAPERS["F"][0], 1, DAY[3]),
        (PAPERS["G"][0], 1, DAY[4]),
        (PAPERS["H"][0], 2, DAY[4]),
    ]
    assert [row[:6] for row in _section(result, "again").rows] == [
        (PAPERS["A"][0], 2, 4, 4, DAY[1], DAY[4]),
        (PAPERS["C"][0], 2, 2, 3, DAY[1], DAY[4]),
        (PAPERS["E"][0], 1, 1, 2, DAY[2], DAY[4]),
    ]
    revised = _section(result, "revised")
    assert [row[:3] for row in revised.rows] == [
        (B_REVISED[0], PAPERS["B"][0], "title reworded, abstract extended, code link added"),
        (D_SHORT[0], PAPERS["D"][0], "abstract shortened"),
    ]
    assert changes(str(out)).since == 3  # the default is still the previous version
    with pytest.raises(UserError, match="this output keeps versions 2, 3 and 4 "):
        changes(str(out), since=1)

    capsys.readouterr()
    day = tmp_path / "dumps" / f"digest_{DAY[4].isoformat()}.txt"
    argv = ["run", f"--input={day}", f"--output={tmp_path / 'other'}", "--no_embeddings"]
    assert main([*argv, "--keep_versions=1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "digestflow: error: --keep_versions must be >= 2 (the current version and the "
        "previous one, which a reader may still be scanning), got 1\n"
    )


@pytest.mark.slow
def test_topic_share_against_the_weeks_before(tmp_path: Path) -> None:
    """With embeddings: the shares equal a recount from Parquet, and image generation rises."""
    out = _build(tmp_path, "--semantic_threshold=off")
    result = changes(str(out))
    topics = _section(result, "topics")
    assert topics.note == ""

    root = versions.current_root(str(out))
    records = read_table(
        root, "records", ["record_id", "cluster_id", "is_canonical", "digest_date", "tags"]
    )
    rows = records.to_pylist()
    tags = {r["cluster_id"]: r["tags"] for r in rows if r["is_canonical"]}
    day4 = {r["cluster_id"] for r in rows if r["digest_date"] == DAY[4]}
    before = {r["cluster_id"] for r in rows if r["digest_date"] < DAY[4]}
    now_counts = Counter(t for c in day4 for t in tags[c])
    before_counts = Counter(t for c in before for t in tags[c])
    expected = []
    for tag in set(now_counts) | set(before_counts):
        share_now = now_counts[tag] / len(day4)
        share_before = before_counts[tag] / len(before)
        trend = "rising" if share_now > share_before else "falling"
        trend = "steady" if share_now == share_before else trend
        kind = "paper_type" if tag in ("survey", "benchmark", "has-code") else "topic"
        change = round(share_now - share_before, 4)
        expected.append(
            (
                tag,
                kind,
                now_counts[tag],
                round(share_now, 4),
                before_counts[tag],
                round(share_before, 4),
                change,
                trend,
            )
        )
    expected.sort(key=lambda row: (-row[6], -row[3], row[0]))
    assert topics.rows == expected
    assert len(day4) == 7 and len(before) == 6
    for name in ("G", "H"):
        assert "diffusion-models" in tags[_id(out, PAPERS[name][0])]
    diffusion = [row for row in topics.rows if row[0] == "diffusion-models"]
    assert diffusion and diffusion[0][-1] == "rising"
