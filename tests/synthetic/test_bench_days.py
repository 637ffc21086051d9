"""The incremental bench's data: a base corpus and one new day with the asked-for share of
papers the corpus already holds (bench/incremental.py), on the current generator."""

from __future__ import annotations

from pathlib import Path

from beam_jobs.synthetic.dumps import read_slots
from bench.incremental import day_data


def test_the_new_day_holds_the_known_share_and_parses_whole(tmp_path: Path) -> None:
    data = day_data(tmp_path / "days", base_records=2_000, day_records=100, seed=3, share=0.8)
    assert data.new_records == 100 and data.known_records == 80
    assert data.known_share == 0.8
    base_texts = {
        slot
        for path in Path(data.base_dir).glob("*.txt")
        for slot in read_slots(path)
        if slot[1] is not None
    }
    new_slots = read_slots(Path(data.new_dir) / data.new_file)
    assert len(new_slots) == 100 and all(abstract is not None for _, abstract in new_slots)
    # re-listed records are texts the corpus holds; the 20 new papers are not in it
    assert 0 < sum(slot in base_texts for slot in new_slots) <= 80
    again = day_data(tmp_path / "days", base_records=2_000, day_records=100, seed=3, share=0.8)
    assert again == data, "cached and deterministic"
