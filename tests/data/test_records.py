"""Bad-record accounting, the max-bad-fraction check, file-shape errors and field helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from data_builders import SLAKE_TRAIN, make_slake, slake_record, write_image, write_json

from mile.data.errors import DataError
from mile.data.records import (
    BadRecord,
    BadRecordError,
    BadRecords,
    Reason,
    check_bad_fraction,
    get_answer,
    get_id,
    normalise_answer_type,
    read_json_list,
    read_jsonl,
)
from mile.data.slake import load_slake


def _bad(n_records: int, n_bad: int) -> BadRecords:
    items = [
        BadRecord(i, f"q{i}", Reason.MISSING_IMAGE, f"image {i}.jpg does not exist") for i in range(n_bad)
    ]
    return BadRecords(file=Path("/data/train.json"), n_records=n_records, items=items)


# ---- file shapes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        ('{"records": []}', "expected a JSON list of records at the top level, got dict"),
        ('"text"', "got str"),
        ("", "not valid UTF-8 JSON"),
    ],
)
def test_read_json_list_shape_errors_name_the_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        read_json_list(path)
    assert str(path) in str(info.value)


def test_read_json_list_rejects_non_utf8_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_bytes(b'["\xff\xfe"]')
    with pytest.raises(DataError, match="train.json"):
        read_json_list(path)
    with pytest.raises(DataError, match="file not found"):
        read_json_list(tmp_path / "absent.json")


def test_read_jsonl_skips_blank_lines_and_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n  \n[2]\n')
    assert read_jsonl(path) == [{"a": 1}, [2]]
    path.write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(DataError, match=r"data.jsonl, line 2: not valid JSON"):
        read_jsonl(path)


def test_record_that_is_not_an_object_is_a_clear_error(tmp_path: Path) -> None:
    root = make_slake(tmp_path, train=[SLAKE_TRAIN[0], ["not", "an", "object"]])
    with pytest.raises(
        DataError, match=r"train.json: record 1 is a JSON list, expected an object with fields qid"
    ):
        load_slake(root)


# ---- counting ------------------------------------------------------------------------------------------------------


def test_bad_records_count_every_reason_with_ids(tmp_path: Path) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"x")
    train = [
        slake_record(0, "xmlab0/source.jpg", "Fine?", "yes"),
        {k: v for k, v in slake_record(1, "xmlab0/source.jpg", "No answer?", "x").items() if k != "answer"},
        slake_record(2, "xmlab0/source.jpg", 42, "x"),  # question not a string
        slake_record(3, "xmlab0/source.jpg", "   ", "x"),
        slake_record(4, "xmlab9/source.jpg", "Missing image?", "x"),
        slake_record(5, "../../outside.jpg", "Escape?", "x"),
        slake_record(6, "xmlab0/source.jpg", "Odd type?", "x", answer_type="MAYBE"),
        slake_record(0, "xmlab0/source.jpg", "Duplicate?", "x"),
        slake_record(8, "xmlab0/source.jpg", "Null answer?", None),
        slake_record(9, "xmlab0/source.jpg", "List answer?", ["a", "b"]),
        slake_record(10, "xmlab0/source.jpg", "Wrong language?", "x", q_lang="fr"),
        {
            "img_name": "xmlab0/source.jpg",
            "question": "No id?",
            "answer": "x",
            "q_lang": "en",
            "answer_type": "OPEN",
        },
    ]
    result = load_slake(make_slake(tmp_path / "slake", train=train))
    assert [s.id for s in result.samples] == ["0"]
    bad = result.bad
    assert bad.file == (tmp_path / "slake/train.json").resolve()
    assert bad.n_records == 12 and bad.n_bad == 11
    assert bad.counts == {
        "missing_field": 3,
        "wrong_type": 2,
        "empty_question": 1,
        "missing_image": 1,
        "path_escape": 1,
        "bad_value": 2,
        "duplicate_id": 1,
    }
    assert bad.ids("missing_field") == ["1", "8", "#11"]
    assert bad.ids(Reason.WRONG_TYPE) == ["2", "9"]
    assert bad.ids("bad_value") == ["6", "10"]
    assert bad.ids("duplicate_id") == ["0"]
    assert [item.index for item in bad.items if item.reason is Reason.PATH_ESCAPE] == [5]
    assert math.isclose(bad.fraction, 11 / 12)


def test_other_language_records_are_skipped_not_counted(tmp_path: Path) -> None:
    train = [
        slake_record(0, "xmlab0/source.jpg", "Fine?", "yes"),
        slake_record(1, "xmlab0/source.jpg", "坏的?", None, q_lang="zh"),  # bad, but filtered out first
    ]
    result = load_slake(make_slake(tmp_path, train=train))
    assert len(result) == 1 and result.bad.n_records == 1 and result.bad.n_bad == 0
    assert load_slake(tmp_path, language="all").bad.counts == {"missing_field": 1}


def test_verify_images_counts_corrupt_images_once_per_record(tmp_path: Path) -> None:
    root = make_slake(tmp_path)
    (root / "imgs/xmlab0/source.jpg").write_bytes(b"")  # zero bytes
    assert load_slake(root, verify_images=False).bad.n_bad == 0  # not opened without verify_images
    result = load_slake(root)  # verified by default
    assert result.bad.counts == {"corrupt_image": 1}  # qid 0 (qid 1 shares the image but is Chinese)
    assert "source.jpg" in result.bad.items[0].detail
    assert len(load_slake(root, language="all", verify_images=True).bad.ids("corrupt_image")) == 2


def test_verify_images_applies_max_pixels(tmp_path: Path) -> None:
    root = make_slake(tmp_path)
    write_image(root / "imgs/xmlab2/source.jpg", size=(50, 50))
    result = load_slake(root, verify_images=True, max_pixels=1000)
    assert result.bad.ids("corrupt_image") == ["3"]
    assert "max_pixels" in result.bad.items[0].detail


def test_summary_and_dict_report() -> None:
    bad = _bad(10, 2)
    text = bad.summary()
    assert text.startswith("/data/train.json: 2 of 10 records dropped (20.00%) [missing_image=2]")
    assert "id 'q0' (record 0): missing_image: image 0.jpg does not exist" in text
    report = bad.to_dict()
    assert report["n_bad"] == 2 and report["counts"] == {"missing_image": 2}
    assert report["items"][1] == {
        "index": 1,
        "id": "q1",
        "reason": "missing_image",
        "detail": "image 1.jpg does not exist",
    }
    json.dumps(report)  # JSON-ready
    assert BadRecords(file=Path("x.json")).fraction == 0.0


# ---- the max-bad-fraction check -------------------------------------------------------------------------------------


def test_check_bad_fraction_passes_at_or_under_the_limit() -> None:
    check_bad_fraction(_bad(20, 1), 0.05)  # exactly 5 %
    check_bad_fraction(_bad(20, 20), None)  # disabled
    check_bad_fraction(_bad(0, 0), 0.0)


def test_check_bad_fraction_error_names_file_fraction_limit_and_examples() -> None:
    with pytest.raises(DataError) as info:
        check_bad_fraction(_bad(10, 2), 0.05)
    message = str(info.value)
    for part in [
        "/data/train.json",
        "2 of 10",
        "20.00%",
        "max_bad_fraction is 5.00%",
        "'q0'",
        "missing_image",
    ]:
        assert part in message


@pytest.mark.parametrize("limit", [-0.1, 1.5])
def test_check_bad_fraction_rejects_invalid_limits(limit: float) -> None:
    with pytest.raises(DataError, match="max_bad_fraction must be in"):
        check_bad_fraction(_bad(1, 0), limit)


def test_load_result_check_returns_itself(tmp_path: Path) -> None:
    missing = slake_record(7, "xmlab9/source.jpg", "Is this a CT?", "No")  # no such image: 1 of 4 English bad
    result = load_slake(make_slake(tmp_path, train=[*SLAKE_TRAIN, missing]))
    samples = list(result.samples)
    assert [s.id for s in samples] == ["0", "2", "3"] and result.bad.ids() == ["7"]
    assert result.check(0.25) is result and result.check(1.0) is result and result.check(None) is result
    with pytest.raises(DataError, match=r"1 of 4 records dropped \(25\.00%\).*max_bad_fraction is 24\.00%"):
        result.check(0.24)
    with pytest.raises(DataError, match=r"max_bad_fraction is 5\.00%"):
        result.check()  # the default limit
    assert result.samples == samples and result.bad.n_bad == 1  # checking changes nothing


# ---- field helpers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Yes", "Yes"), (" left lung ", "left lung"), (4, "4"), (2.0, "2"), (2.5, "2.5"), ("", ""), (0, "0")],
)
def test_get_answer_converts_numbers(value: object, expected: str) -> None:
    assert get_answer({"answer": value}) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, Reason.WRONG_TYPE),
        ([1], Reason.WRONG_TYPE),
        ({}, Reason.WRONG_TYPE),
        (None, Reason.MISSING_FIELD),
    ]
    + [(float("nan"), Reason.BAD_VALUE), (float("inf"), Reason.BAD_VALUE)],
)
def test_get_answer_rejects_other_types(value: object, reason: Reason) -> None:
    with pytest.raises(BadRecordError) as info:
        get_answer({"answer": value})
    assert info.value.reason is reason


@pytest.mark.parametrize(
    ("value", "expected"), [("CLOSED", "CLOSED"), ("CLOSED ", "CLOSED"), (" open", "OPEN")]
)
def test_normalise_answer_type(value: str, expected: str) -> None:
    assert normalise_answer_type(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"), [("MAYBE", Reason.BAD_VALUE), ("", Reason.BAD_VALUE), (1, Reason.WRONG_TYPE)]
)
def test_normalise_answer_type_rejects(value: object, reason: Reason) -> None:
    with pytest.raises(BadRecordError) as info:
        normalise_answer_type(value)
    assert info.value.reason is reason


def test_get_id_accepts_str_and_int_only() -> None:
    assert get_id({"qid": 7}, "qid") == "7" and get_id({"qid": "0"}, "qid") == "0"
    for value, reason in [(True, Reason.WRONG_TYPE), (1.5, Reason.WRONG_TYPE), (" ", Reason.BAD_VALUE)]:
        with pytest.raises(BadRecordError) as info:
            get_id({"qid": value}, "qid")
        assert info.value.reason is reason


def test_write_json_helper_roundtrip(tmp_path: Path) -> None:
    assert read_json_list(write_json(tmp_path / "x.json", [{"a": "é"}])) == [{"a": "é"}]
