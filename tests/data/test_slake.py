"""SLAKE loader on a tiny dataset in the official format."""

from __future__ import annotations

from pathlib import Path

import pytest

from mile.data.errors import DataError
from mile.data.slake import load_slake


def test_english_by_default(slake_root: Path) -> None:
    result = load_slake(slake_root)
    assert [s.id for s in result.samples] == ["0", "2", "3"]
    first = result.samples[0]
    assert first.question == "What modality is used to take this image?"
    assert first.answer == "MRI" and first.answer_type == "OPEN" and first.question_type == "Modality"
    assert first.image == (slake_root / "imgs/xmlab0/source.jpg").resolve()
    assert first.source == "slake"
    assert first.extra["q_lang"] == "en" and first.extra["modality"] == "MRI"
    assert result.samples[1].answer_type == "CLOSED"
    assert result.samples[2].question_type == "Abnormality"
    assert result.bad.n_records == 3 and result.bad.n_bad == 0


def test_language_filter(slake_root: Path) -> None:
    assert [s.id for s in load_slake(slake_root, language="zh").samples] == ["1", "4"]
    assert len(load_slake(slake_root, language="all")) == 5
    assert load_slake(slake_root, language="zh").samples[1].answer == "肝脏"
    with pytest.raises(DataError, match=r"language='fr'; valid: \['en', 'zh', 'all'\]"):
        load_slake(slake_root, language="fr")


def test_validate_split(slake_root: Path) -> None:
    result = load_slake(slake_root, "validate")
    assert [s.id for s in result.samples] == ["100"]
    assert result.samples[0].question_type == "Position"


def test_split_errors(slake_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="test.json does not exist"):
        load_slake(slake_root, "test")
    with pytest.raises(
        DataError, match=r"unknown SLAKE split 'val'; valid splits: \['test', 'train', 'validate'\]"
    ):
        load_slake(slake_root, "val")
    with pytest.raises(DataError, match="SLAKE root .* is not a directory"):
        load_slake(tmp_path / "absent")


def test_missing_content_type_gives_empty_question_type(tmp_path: Path) -> None:
    from data_builders import make_slake, slake_record

    record = slake_record(0, "xmlab0/source.jpg", "Q?", "A")
    del record["content_type"]
    result = load_slake(make_slake(tmp_path, train=[record]))
    assert result.samples[0].question_type == ""
