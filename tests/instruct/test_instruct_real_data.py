"""The builder and loader on the real VQA-RAD in ../shared (fails, never skips, when it is missing)."""

from __future__ import annotations

import json
from pathlib import Path

from mile.instruct.build import build_instruction_data
from mile.instruct.leaks import find_leaks
from mile.instruct.registry import load_dataset


def test_vqa_rad_test_split(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "vqa_rad"
    out = tmp_path / "rad_test.json"
    summary = build_instruction_data([f"vqa_rad={root}"], "test", out, seed=0)
    records = json.loads(out.read_text())
    part = summary["parts"][0]
    assert len(records) == 451 and (part["n_closed"], part["n_open"]) == (272, 179)
    assert summary["n_prompts"] == 272 * 6 + 179 * 5 == 2527
    assert part["prompts_per_template"] == {"1": 451, "2": 451, "3": 272, "4": 451, "5": 451, "6": 451}
    assert all(r["answer"] in r["options"] for r in records)
    assert records[0]["img_name"] == "vqa-rad/synpic42202.jpg"

    loaded = load_dataset("instruct", out, image_roots={"vqa-rad": root / "images"}, max_bad_fraction=0.0)
    test = load_dataset("vqa_rad", root, "test").samples
    assert len(loaded) == 451
    assert find_leaks(loaded.samples, test).n_leaked == 451  # built from the test split itself: all of it
