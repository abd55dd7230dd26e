"""VQA-RAD loader on a tiny dataset in the train/test and public formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_builders import make_vqa_rad, rad_record

from mile.data.errors import DataError
from mile.data.vqa_rad import load_vqa_rad


def test_train_split_normalises_quirks(rad_root: Path) -> None:
    result = load_vqa_rad(rad_root, "train")
    assert result.bad.n_bad == 0
    by_id = {s.id: s for s in result.samples}
    assert list(by_id) == ["1", "2", "3", "4"]
    assert by_id["2"].answer_type == "CLOSED"  # "CLOSED " with a trailing space
    assert by_id["3"].answer == "4" and by_id["3"].question_type == "COUNT"  # JSON number answer
    assert by_id["4"].answer == "superficial to the patient's skin"  # leading space stripped
    assert by_id["1"].image == (rad_root / "images/synpic1.jpg").resolve()
    assert by_id["1"].extra == {"image_organ": "HEAD", "phrase_type": "freeform"}
    assert by_id["1"].source == "vqa_rad"


def test_test_and_public_splits(rad_root: Path) -> None:
    assert [s.id for s in load_vqa_rad(rad_root, "test").samples] == ["11"]
    public = load_vqa_rad(rad_root, "public")
    assert [s.id for s in public.samples] == ["0", "1"]  # qid "0" is a string in the public file
    assert public.samples[1].answer == "2"
    assert public.bad.file.name == "VQA_RAD_Dataset_Public.json"


@pytest.mark.parametrize(
    ("answer_type", "answer", "reason"),
    [
        ("MAYBE", "yes", "bad_value"),
        ("", "yes", "bad_value"),
        (None, "yes", "missing_field"),
        (3, "yes", "wrong_type"),
        ("OPEN", ["a"], "wrong_type"),
        ("OPEN", True, "wrong_type"),
        ("OPEN", {"text": "a"}, "wrong_type"),
    ],
)
def test_bad_records(tmp_path: Path, answer_type: object, answer: object, reason: str) -> None:
    train = [rad_record(1, "synpic1.jpg", "Q?", "yes", "CLOSED"), rad_record(2, "synpic1.jpg", "Q?", answer)]
    train[1]["answer_type"] = answer_type
    result = load_vqa_rad(make_vqa_rad(tmp_path, train=train))
    assert [s.id for s in result.samples] == ["1"]
    assert result.bad.counts == {reason: 1} and result.bad.ids() == ["2"]


def test_lower_case_answer_type_is_accepted(tmp_path: Path) -> None:
    train = [rad_record(1, "synpic1.jpg", "Q?", "yes", " closed")]
    assert load_vqa_rad(make_vqa_rad(tmp_path, train=train)).samples[0].answer_type == "CLOSED"


def test_unknown_split(rad_root: Path) -> None:
    with pytest.raises(DataError, match=r"valid splits: \['public', 'test', 'train'\]"):
        load_vqa_rad(rad_root, "validate")
