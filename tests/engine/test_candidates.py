"""The candidate answers of answer ranking: one per normalised answer, spelled as most often, most frequent first;
an answer list file is checked like any other input."""

import json

import pytest

from mile.data.errors import DataError
from mile.engine.candidates import candidates_from, read_answer_list


def test_one_candidate_per_normalised_answer_most_frequent_first():
    answers = ["Yes", "no", "yes", "yes.", "Left Lung", "left lung", "left lung", "no", "CT", "!!", " ct "]
    # yes x3 (spelled "Yes", "yes", "yes." once each: the first seen wins the tie), left lung x3, no x2, ct x2
    assert candidates_from(answers) == ["Yes", "left lung", "no", "CT"]


def test_an_answer_list_file_is_read_and_checked(tmp_path):
    good = tmp_path / "answers.json"
    good.write_text(json.dumps(["yes", "no", "No", "liver"]))
    assert read_answer_list(good) == ["no", "yes", "liver"]
    for name, text, message in [
        ("missing.json", None, "not found"),
        ("broken.json", "[1, ", "not a readable JSON file"),
        ("numbers.json", "[1, 2]", "JSON list of answer strings"),
        ("mapping.json", '{"a": 1}', "JSON list of answer strings"),
        ("empty.json", '["", "?!"]', "no usable answer"),
    ]:
        file = tmp_path / name
        if text is not None:
            file.write_text(text)
        with pytest.raises(DataError, match=f"eval.answer_list: {file}.*{message}"):
            read_answer_list(file)
