"""The documented JSONL / JSON format for users' own data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import write_image, write_json

from mile.data.errors import DataError
from mile.data.generic import default_answer_type, load_generic


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_image(tmp_path / "imgs/a.png", "RGBA", fmt="PNG")
    write_image(tmp_path / "imgs/b.jpg", "L")
    return tmp_path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


RECORDS = [
    {"image": "imgs/a.png", "question": "Is there a fracture?", "answer": "No"},
    {"image": "imgs/b.jpg", "question": "Which organ?", "answer": "liver", "question_type": "ORGAN"},
    {"image": "imgs/b.jpg", "question": "How many?", "answer": 3, "id": "case-7", "answer_type": "open"},
    {
        "image": "imgs/a.png",
        "question": "Is it large?",
        "answer": "big",
        "id": 9,
        "answer_type": "CLOSED",
        "site": 2,
    },
]


def test_jsonl_with_defaults(folder: Path) -> None:
    result = load_generic(write_jsonl(folder / "train.jsonl", RECORDS))
    assert result.bad.n_bad == 0
    ids = [s.id for s in result.samples]
    assert ids == ["0", "1", "case-7", "9"]
    types = [s.answer_type for s in result.samples]
    assert types == ["CLOSED", "OPEN", "OPEN", "CLOSED"]  # defaults: yes/no -> CLOSED, else OPEN
    assert result.samples[1].question_type == "ORGAN" and result.samples[0].question_type == ""
    assert result.samples[2].answer == "3"
    assert result.samples[3].extra == {"site": 2}
    assert result.samples[0].image == (folder / "imgs/a.png").resolve()
    assert result.samples[0].source == "generic"


def test_json_list_and_directory_lookup(folder: Path) -> None:
    write_json(folder / "test.json", RECORDS[:2])
    assert len(load_generic(folder / "test.json")) == 2
    assert len(load_generic(folder, "test")) == 2
    write_jsonl(folder / "train.jsonl", RECORDS)
    assert len(load_generic(folder)) == 4  # split defaults to train
    with pytest.raises(DataError, match="expected validate.jsonl or validate.json"):
        load_generic(folder, "validate")


def test_image_root_option(folder: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    path = write_jsonl(meta / "train.jsonl", [{"image": "a.png", "question": "Q?", "answer": "yes"}])
    assert load_generic(path).bad.counts == {"missing_image": 1}  # relative to the file's folder by default
    result = load_generic(path, image_root=folder / "imgs")
    assert result.samples[0].image == (folder / "imgs/a.png").resolve()
    with pytest.raises(DataError, match="image root"):
        load_generic(path, image_root=folder / "absent")


def test_bad_records_and_escape(folder: Path) -> None:
    records = [
        RECORDS[0],
        {"question": "no image?", "answer": "x"},
        {"image": "../../etc/passwd", "question": "escape?", "answer": "x"},
        {"image": "imgs/a.png", "question": "dup?", "answer": "x", "id": "0"},
        {"image": "imgs/a.png", "question": "", "answer": "x"},
        {"image": 5, "question": "Q?", "answer": "x"},
    ]
    result = load_generic(write_jsonl(folder / "train.jsonl", records))
    assert result.bad.counts == {
        "missing_field": 1,
        "path_escape": 1,
        "duplicate_id": 1,
        "empty_question": 1,
        "wrong_type": 1,
    }


def test_shape_errors(folder: Path) -> None:
    (folder / "train.jsonl").write_text('{"image": "imgs/a.png"}\nnot json\n')
    with pytest.raises(DataError, match="train.jsonl, line 2"):
        load_generic(folder / "train.jsonl")
    (folder / "train.jsonl").write_text("[1, 2]\n")
    with pytest.raises(
        DataError, match="record 0 is a JSON list, expected an object with required fields image"
    ):
        load_generic(folder / "train.jsonl")
    write_json(folder / "list.json", {"image": "a"})
    with pytest.raises(DataError, match="top level, got dict"):
        load_generic(folder / "list.json")
    (folder / "data.csv").write_text("image,question\n")
    with pytest.raises(DataError, match=r"unknown data file type '.csv'"):
        load_generic(folder / "data.csv")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("yes", "CLOSED"),
        (" No ", "CLOSED"),
        ("Yes.", "CLOSED"),
        ("yes, no", "OPEN"),
        ("yesterday", "OPEN"),
        ("", "OPEN"),
    ],
)
def test_default_answer_type(answer: str, expected: str) -> None:
    assert default_answer_type(answer) == expected
