"""The loaders on the real SLAKE and VQA-RAD copies in ../shared (fails, never skips, when they are missing)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mile.data.registry import load_dataset


@pytest.mark.parametrize(
    ("name", "folder", "split", "options", "count"),
    [
        ("slake", "slake", "train", {}, 4919),
        ("slake", "slake", "validate", {}, 1053),
        ("slake", "slake", "train", {"language": "all"}, 9835),
        ("slake", "slake", "validate", {"language": "zh"}, 1046),
        ("vqa_rad", "vqa_rad", "train", {}, 3064),
        ("vqa_rad", "vqa_rad", "test", {}, 451),
        ("vqa_rad_public", "vqa_rad", "public", {}, 2248),
    ],
)
def test_counts_and_no_bad_records(
    shared_data: Path, name: str, folder: str, split: str, options: dict, count: int
) -> None:
    result = load_dataset(name, shared_data / folder, split, max_bad_fraction=0.0, **options)
    assert len(result) == count
    assert result.bad.n_bad == 0, result.bad.summary()
    assert len({s.id for s in result.samples}) == count
    assert all(s.answer_type in ("OPEN", "CLOSED") for s in result.samples)


def test_vqa_rad_quirks_are_normalised(shared_data: Path) -> None:
    train = {s.id: s for s in load_dataset("vqa_rad", shared_data / "vqa_rad", "train").samples}
    assert Counter(s.answer_type for s in train.values()) == {
        "CLOSED": 1823,
        "OPEN": 1241,
    }  # 2 were "CLOSED "
    assert train["2392"].answer == "4"  # a JSON number in the file
    assert train["3504"].answer == "superficial to the patient's skin"  # leading space in the file
    public = load_dataset("vqa_rad_public", shared_data / "vqa_rad").samples
    assert public[0].id == "0"  # the one string qid


def test_slake_english_train_label_quirks(shared_data: Path) -> None:
    train = {s.id: s for s in load_dataset("slake", shared_data / "slake").samples}
    assert Counter(s.answer_type for s in train.values()) == {"OPEN": 2976, "CLOSED": 1943}
    assert train["1622"].answer == ""  # the one empty answer in SLAKE train: kept as the dataset's label
    assert {s.question_type for s in train.values()} >= {"Organ", "Modality", "KG", "Position"}


@pytest.mark.parametrize(
    ("name", "folder", "split"), [("vqa_rad", "vqa_rad", "test"), ("slake", "slake", "validate")]
)
def test_every_image_decodes(shared_data: Path, name: str, folder: str, split: str) -> None:
    result = load_dataset(name, shared_data / folder, split, verify_images=True, max_bad_fraction=0.0)
    assert result.bad.n_bad == 0
