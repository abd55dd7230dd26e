"""load_dataset: names, default splits, options and the max-bad-fraction check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import make_slake, slake_record, write_image

from mile.data.errors import DataError
from mile.data.registry import dataset_names, load_dataset


def test_names() -> None:
    assert dataset_names() == [
        "generic",
        "jsonl",
        "slake",
        "vqa_rad",
        "vqa_rad_public",
    ]  # instruct: mile.instruct


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"unknown dataset 'slak'; valid names: \['generic', 'jsonl', 'slake'"
    ):
        load_dataset("slak", tmp_path)


def test_slake_and_vqa_rad(slake_root: Path, rad_root: Path) -> None:
    assert len(load_dataset("slake", slake_root)) == 3
    assert len(load_dataset("slake", slake_root, "train", language="all")) == 5
    assert len(load_dataset("slake", slake_root, "validate", verify_images=True)) == 1
    assert len(load_dataset("vqa_rad", rad_root)) == 4
    assert len(load_dataset("vqa_rad", rad_root, "test")) == 1
    public = load_dataset("vqa_rad_public", rad_root)
    assert [s.id for s in public.samples] == ["0", "1"]
    assert len(load_dataset("vqa_rad", rad_root, "public")) == 2


def test_generic_and_jsonl(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", fmt="PNG")
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"image": "a.png", "question": "Q?", "answer": "no"}) + "\n"
    )
    for name in ("generic", "jsonl"):
        assert load_dataset(name, tmp_path, "test").samples[0].answer_type == "CLOSED"
        assert len(load_dataset(name, tmp_path / "test.jsonl", image_root=tmp_path)) == 1


@pytest.mark.parametrize(
    ("name", "split", "options", "match"),
    [
        (
            "slake",
            "dev",
            {},
            r"dataset 'slake' has no split 'dev'; valid splits: \['train', 'validate', 'test'\]",
        ),
        ("vqa_rad_public", "train", {}, r"valid splits: \['public'\]"),
        ("vqa_rad", "train", {"language": "en"}, r"does not take option\(s\) \['language'\]; valid options"),
        ("slake", "train", {"lang": "en"}, r"\['language', 'max_pixels', 'verify_images'\]"),
    ],
)
def test_bad_split_or_option(
    slake_root: Path, rad_root: Path, name: str, split: str, options: dict, match: str
) -> None:
    root = slake_root if name == "slake" else rad_root
    with pytest.raises(DataError, match=match):
        load_dataset(name, root, split, **options)


def test_max_bad_fraction_is_enforced_by_default(tmp_path: Path) -> None:
    train = [slake_record(i, "xmlab0/source.jpg", f"Q{i}?", "yes") for i in range(19)]
    train.append(slake_record(19, "missing/source.jpg", "Q?", "yes"))
    root = make_slake(tmp_path, train=train)
    assert len(load_dataset("slake", root)) == 19  # 1 of 20 = 5 %: at the limit
    train.append(slake_record(20, "missing/source.jpg", "Q?", "yes"))
    root = make_slake(tmp_path, train=train)
    with pytest.raises(DataError, match=r"2 of 21 records dropped .* max_bad_fraction is 5.00%"):
        load_dataset("slake", root)
    assert len(load_dataset("slake", root, max_bad_fraction=0.1)) == 19
    result = load_dataset("slake", root, max_bad_fraction=None)
    assert result.bad.ids("missing_image") == ["19", "20"]
