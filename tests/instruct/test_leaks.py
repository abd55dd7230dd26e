"""The leak guard, on a fixture that reproduces the authors' pattern: their VQA-RAD instruction file holds 449 of
the 451 VQA-RAD test questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_builders import make_vqa_rad, rad_record, write_json
from instruct_builders import authors_format

from mile.data.registry import load_dataset
from mile.data.sample import Sample
from mile.instruct.build import build_instruction_data
from mile.instruct.dataset import load_instruction
from mile.instruct.leaks import LeakError, check_leaks, drop_leaks, find_leaks, image_key

IMAGES = ("synpic1.jpg", "synpic2.png", "synpic3.jpg")


@pytest.fixture
def leaky(tmp_path: Path) -> tuple[list[Sample], list[Sample]]:
    """(instruction samples in the authors' format, VQA-RAD test samples): 449 of 451 test questions leaked."""
    test = [
        rad_record(
            1000 + i, IMAGES[i % 3], f"Is finding number {i} present?", "yes" if i % 2 else "no", "CLOSED"
        )
        for i in range(451)
    ]
    root = make_vqa_rad(tmp_path / "vqa_rad", test=test)
    out = tmp_path / "ours.json"
    build_instruction_data([f"vqa_rad:train,test={root}"], "train", out, seed=0)
    records = [r for r in json.loads(out.read_text()) if r["qid"] not in (1007, 1300)]
    authors = write_json(tmp_path / "authors_rad.json", authors_format(records))
    instruction = load_instruction(authors, image_roots={"vqa-rad": root / "images"}).samples
    return instruction, load_dataset("vqa_rad", root, "test").samples


def test_reports_the_authors_leak(leaky: tuple[list[Sample], list[Sample]]) -> None:
    instruction, test = leaky
    report = find_leaks(instruction, test)
    assert (report.n_leaked, report.n_evaluation, report.n_instruction) == (449, 451, 4 + 449)
    assert "1007" not in report.leaked_evaluation_ids and "1300" not in report.leaked_evaluation_ids
    assert report.leaked_evaluation_ids[:2] == ["1000", "1001"]
    assert report.pairs[0] == ("vqa_rad:1000", "1000") and report.n_shared_images == 3
    data = report.to_dict(max_examples=3)
    assert data["n_leaked"] == 449 and len(data["examples"]) == 3 and json.dumps(data)


def test_check_raises_unless_allowed(leaky: tuple[list[Sample], list[Sample]]) -> None:
    instruction, test = leaky
    with pytest.raises(
        LeakError, match=r"rad.json vs test: train/test leak: 449 of 451 evaluation questions \(99\.6%\)"
    ):
        check_leaks(instruction, test, what="rad.json vs test")
    assert check_leaks(instruction, test, allow=True).n_leaked == 449
    clean = drop_leaks(instruction, find_leaks(instruction, test))
    assert len(clean) == 4 and check_leaks(clean, test).n_leaked == 0


def _sample(sid: str, image: str, question: str, source: str = "vqa_rad", **extra: object) -> Sample:
    return Sample(sid, Path("/data") / image, question, "yes", "CLOSED", "", source, dict(extra))


def test_question_and_image_normalisation() -> None:
    evaluation = [_sample("e1", "images/synpic1.jpg", "Is there a mass?", "vqa_rad_public")]
    same = _sample("i1", "elsewhere/vqa-rad/synpic1.jpg", "  is THERE a mass ", "vqa_rad")
    other_image = _sample("i2", "images/synpic2.jpg", "Is there a mass?")
    assert find_leaks([same, other_image], evaluation).pairs == [("i1", "e1")]
    # SLAKE images are all source.jpg: the folder tells them apart
    slake_eval = [_sample("e2", "imgs/xmlab1/source.jpg", "Is this a CT?", "slake")]
    slake_train = [_sample("i3", "imgs/xmlab2/source.jpg", "Is this a CT?", "slake")]
    assert find_leaks(slake_train, slake_eval).pairs == []
    assert image_key(slake_eval[0]) == ("slake", "xmlab1/source.jpg")


def test_substring_match_when_the_plain_question_is_unknown() -> None:
    evaluation = [_sample("e1", "synpic1.jpg", "Is this a CT?")]
    pool = ["<custom> Q: Is this a CT? Choose wisely", "Other prompt"]
    unknown = _sample("i1", "synpic1.jpg", pool[0], question_known=False, question_pool=pool)
    longer = ["<custom> Q: Is this a CTA? Choose"]
    near = _sample("i2", "synpic1.jpg", longer[0], question_known=False, question_pool=longer)
    assert find_leaks([unknown, near], evaluation).pairs == [("i1", "e1")]


def test_the_same_file_name_in_another_dataset_family_is_no_leak() -> None:
    evaluation = [_sample("e1", "images/synpic1.jpg", "Is there a mass?", "vqa_rad")]
    elsewhere = _sample("i1", "images/synpic1.jpg", "Is there a mass?", "pathvqa")
    assert find_leaks([elsewhere], evaluation).pairs == []
    assert image_key(elsewhere) == ("pathvqa", "synpic1.jpg")


def test_a_report_says_exactly_what_leaked() -> None:
    evaluation = [
        _sample("vqa_rad:10", "synpic1.jpg", "Is there a mass?"),
        _sample("vqa_rad:9", "synpic1.jpg", "Is this a CT?"),
        _sample("vqa_rad:x", "synpic2.jpg", "Where is it?"),
        _sample("vqa_rad:11", "synpic3.jpg", "Is it left?"),
    ]
    instruction = [
        _sample("i:2", "synpic1.jpg", "is this a ct"),
        _sample("i:10", "synpic1.jpg", "IS THERE A MASS"),
        _sample("i:1", "synpic2.jpg", "where is it"),
        _sample("i:3", "synpic3.jpg", "Is it right?"),  # same image, another question: shared, no leak
        _sample("i:4", "synpic4.jpg", "Is it left?"),
    ]
    report = find_leaks(instruction, evaluation)
    assert report.leaked_evaluation_ids == ["vqa_rad:x", "vqa_rad:9", "vqa_rad:10"]  # numbers in number order
    assert report.leaked_instruction_ids == ["i:1", "i:2", "i:10"]
    assert report.to_dict(max_examples=2) == {
        "n_instruction": 5,
        "n_evaluation": 4,
        "n_leaked": 3,
        "fraction": 0.75,
        "n_leaked_instruction": 3,
        "n_shared_images": 3,
        "examples": [
            {"instruction": "i:2", "evaluation": "vqa_rad:9"},
            {"instruction": "i:10", "evaluation": "vqa_rad:10"},
        ],
    }
    assert report.summary(max_examples=1) == (
        "3 of 4 evaluation questions (75.0%) occur in the instruction data (3 of 5 instruction samples; "
        "same image and question), e.g. instruction ~ evaluation: i:2 ~ vqa_rad:9"
    )
    assert find_leaks(instruction[3:], evaluation).summary() == (
        "0 of 4 evaluation questions (0.0%) occur in the instruction data (0 of 2 instruction samples; "
        "same image and question)"
    )
    with pytest.raises(LeakError, match=r"^a vs b: train/test leak: 3 of 4 evaluation questions"):
        check_leaks(instruction, evaluation, what="a vs b")
    assert check_leaks(instruction, evaluation, allow=True).n_leaked == 3
    assert check_leaks(instruction[3:], evaluation).n_leaked == 0
    assert [s.id for s in drop_leaks(instruction, report)] == ["i:3", "i:4"]


@pytest.mark.parametrize(
    ("source", "family"),
    [
        ("VQA-RAD", "vqa_rad"),
        ("vqa_rad_public", "vqa_rad"),
        (" Slake-EN ", "slake_en"),
        ("PathVQA", "pathvqa"),
    ],
)
def test_source_families(source: str, family: str) -> None:
    from mile.instruct.leaks import source_family

    assert source_family(source) == family


def test_a_prompt_only_sample_matches_on_word_boundaries_of_its_own_text() -> None:
    evaluation = [_sample("e1", "synpic1.jpg", "Is this a CT?")]
    no_pool = _sample("i1", "synpic1.jpg", "Answer this: is this a ct? Please.", question_known=False)
    inside_a_word = _sample("i2", "synpic1.jpg", "xis this a ct", question_known=False)
    assert find_leaks([no_pool, inside_a_word], evaluation).pairs == [("i1", "e1")]


def test_a_plain_instruction_question_must_match_whole_not_as_a_phrase() -> None:
    evaluation = [_sample("e1", "synpic1.jpg", "Is there a mass?")]
    longer = _sample("i1", "synpic1.jpg", "Is there a mass on the left?")  # its own question is known
    assert find_leaks([longer], evaluation).pairs == []


def test_a_prompt_only_sample_is_searched_in_its_pool_not_its_question_text() -> None:
    evaluation = [_sample("e1", "synpic1.jpg", "Is this a CT?")]
    pool = ["Q: Is this a CT? Answer yes or no"]
    sample = _sample(
        "i1", "synpic1.jpg", "(prompt text kept elsewhere)", question_known=False, question_pool=pool
    )
    assert find_leaks([sample], evaluation).pairs == [("i1", "e1")]


def test_defaults_of_the_report_and_the_message() -> None:
    evaluation = [_sample(f"a:b:{i}", "synpic1.jpg", f"Is finding {i} present?") for i in range(25)]
    instruction = [_sample(f"i:{i}", "synpic1.jpg", f"is finding {i} present") for i in range(25)]
    report = find_leaks(instruction, evaluation)
    assert report.leaked_evaluation_ids[:3] == ["a:b:0", "a:b:1", "a:b:2"]  # the last field is the number
    assert report.leaked_evaluation_ids[10] == "a:b:10"
    assert len(report.to_dict()["examples"]) == 20
    assert report.summary().count(" ~ ") == 1 + 5  # "instruction ~ evaluation:", then five examples
    with pytest.raises(LeakError) as error:
        check_leaks(instruction[:2], evaluation[:2])
    assert str(error.value) == (  # no `what`: no prefix
        "train/test leak: 2 of 2 evaluation questions (100.0%) occur in the instruction data (2 of 2 instruction "
        "samples; same image and question), e.g. instruction ~ evaluation: i:0 ~ a:b:0, i:1 ~ a:b:1. Evaluating "
        "on these questions would measure memorisation. Drop them from the instruction data "
        "(mile.instruct.leaks.drop_leaks), evaluate on another split, or allow leaks explicitly (data.leaks: "
        "allow) and say so beside every number."
    )


def test_ids_sort_naturally_and_words_before_numbers() -> None:
    from mile.instruct.leaks import _natural

    assert sorted(["h:2", "h:10", "h:x", "h:1", "g:5"], key=_natural) == ["g:5", "h:x", "h:1", "h:2", "h:10"]
