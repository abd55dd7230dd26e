"""The builder on tiny SLAKE / VQA-RAD roots: templates per answer type, options, targets, seeds, summary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from data_builders import make_slake, slake_record
from hypothesis import given, settings
from hypothesis import strategies as st
from instruct_builders import RAD_OPTIONS_TRAIN

from mile.data.answers import normalize_answer
from mile.data.errors import DataError
from mile.data.sample import Sample
from mile.instruct.build import InstructionSource, build_instruction_data
from mile.instruct.options import (
    DistractorPool,
    make_options,
    opposite,
    question_type_labels,
)


def _build(tmp_path: Path, sources: list, split: str = "train", seed: int = 0, **kw) -> tuple[dict, list]:
    out = tmp_path / f"out-{seed}.json"
    summary = build_instruction_data(sources, split, out, seed=seed, **kw)
    return summary, json.loads(out.read_text(encoding="utf-8"))


def test_closed_get_six_prompts_open_five(tmp_path: Path, rad_root: Path, slake_root: Path) -> None:
    summary, records = _build(tmp_path, [f"vqa_rad={rad_root}", InstructionSource("slake", slake_root)])
    assert summary["n_records"] == len(records) == 4 + 3
    for record in records:
        expected = [1, 2, 3, 4, 5, 6] if record["answer_type"] == "CLOSED" else [1, 2, 4, 5, 6]
        assert record["template_ids"] == expected and len(record["question_pool"]) == len(expected)
        assert all("{" + record["question"] + "}" in prompt for prompt in record["question_pool"])
    assert summary["n_prompts"] == sum(len(r["question_pool"]) for r in records) == 3 * 6 + 4 * 5
    assert [p["n_records"] for p in summary["parts"]] == [4, 3]


def test_record_fields_targets_and_image_names(tmp_path: Path, rad_root: Path, slake_root: Path) -> None:
    _, records = _build(tmp_path, [f"vqa_rad={rad_root}", f"slake={slake_root}"])
    by_key = {(r["source"], r["qid"]): r for r in records}
    count = by_key[("vqa_rad", 3)]
    assert count["answer"] == "4" and "4" in count["options"]  # a JSON number becomes the target text
    assert count["img_name"] == "vqa-rad/synpic2.png"
    assert by_key[("slake", 2)]["img_name"] == "xmlab1/source.jpg"  # SLAKE's own relative name
    first = by_key[("vqa_rad", 1)]
    assert set(first) == {
        "img_name", "qid", "answer", "question_pool", "template_ids", "options", "question",
        "source", "split", "answer_type", "question_type",
    }  # fmt: skip
    assert first["split"] == "train" and first["answer_type"] == "CLOSED" and first["question_type"] == "PRES"
    assert first["question_pool"][1].startswith(
        "<image>Question:{Are regions of the brain infarcted?}Option:{("
    )
    assert by_key[("vqa_rad", 4)]["answer"] == "superficial to the patient's skin"  # stripped, not a letter


def test_yes_no_options_are_truth_and_opposite(tmp_path: Path, rad_options_root: Path) -> None:
    _, records = _build(tmp_path, [f"vqa_rad={rad_options_root}"])
    by_qid = {r["qid"]: r for r in records}
    assert sorted(by_qid[1]["options"]) == ["No", "Yes"]
    assert sorted(by_qid[2]["options"]) == ["NO", "YES"]
    assert sorted(by_qid[8]["options"]) == ["no", "yes"]  # an OPEN question with a yes/no answer
    assert opposite("Yes") == "No" and opposite(" no ") == "yes"


def test_distractors_same_type_distinct_never_the_truth(tmp_path: Path, rad_options_root: Path) -> None:
    _, records = _build(tmp_path, [f"vqa_rad={rad_options_root}"])
    by_qid = {r["qid"]: r for r in records}
    pos_answers = {normalize_answer(r["answer"]) for r in RAD_OPTIONS_TRAIN if "POS" in r["question_type"]}
    for qid in (3, 4, 5, 6, 7):
        options = by_qid[qid]["options"]
        keys = [normalize_answer(o) for o in options]
        assert len(options) == 4 and len(set(keys)) == 4
        assert keys.count(normalize_answer(by_qid[qid]["answer"])) == 1
        assert set(keys) <= pos_answers - {"yes", "no"}
    # "Left lung" and "left  LUNG." are one answer: question 3's options never hold the other spelling
    assert "left  LUNG." not in by_qid[3]["options"] and "Left lung" not in by_qid[4]["options"]
    # mixed-case "Other"/"OTHER" is one type; the typo "ATRIB" joins "ATTRIB"; "POS, PRES" draws from POS too
    assert sorted(by_qid[10]["options"]) == ["Brain", "Heart"]
    assert sorted(by_qid[12]["options"]) == ["CT", "With contrast"]
    assert by_qid[12]["question_type"] == "ATTRIB" and by_qid[9]["question_type"] == "POS, PRES"
    assert len(by_qid[9]["options"]) == 4
    assert by_qid[14]["options"] == ["4"]  # the only COUNT answer: the truth alone


def test_same_seed_same_bytes_other_seed_other_order(tmp_path: Path, rad_options_root: Path) -> None:
    sources = [f"vqa_rad={rad_options_root}"]
    first, records = _build(tmp_path, sources, seed=3)
    again, _ = _build(tmp_path / "again", sources, seed=3)
    other, other_records = _build(tmp_path, sources, seed=4)
    assert first["sha256"] == again["sha256"] != other["sha256"]
    assert [r["options"] for r in records] != [r["options"] for r in other_records]


def test_options_do_not_depend_on_record_order(tmp_path: Path) -> None:
    root_a = make_slake(
        tmp_path / "a", train=[slake_record(i, "xmlab0/source.jpg", f"Q{i}?", f"A{i}") for i in range(8)]
    )
    reversed_records = [slake_record(i, "xmlab0/source.jpg", f"Q{i}?", f"A{i}") for i in reversed(range(8))]
    root_b = make_slake(tmp_path / "b", train=reversed_records)
    _, a = _build(tmp_path / "oa", [f"slake={root_a}"])
    _, b = _build(tmp_path / "ob", [f"slake={root_b}"])
    assert {r["qid"]: r["options"] for r in a} == {r["qid"]: r["options"] for r in b}


def test_question_type_labels() -> None:
    assert question_type_labels("PRES, pos") == ("PRES", "POS")
    assert question_type_labels("Other") == question_type_labels("OTHER") == ("OTHER",)
    assert question_type_labels("PRSE") == ("PRES",) and question_type_labels("") == ("",)


@settings(max_examples=60, deadline=None)
@given(
    answers=st.lists(
        st.sampled_from(["Liver", "liver", "LIVER.", "Lung", "Heart", "yes", "No", "", "x-ray"]),
        min_size=1,
        max_size=12,
    ),
    seed=st.integers(0, 10**6),
)
def test_options_property(answers: list[str], seed: int) -> None:
    samples = [
        Sample(str(i), Path(f"/img/{i}.jpg"), "Q?", a, "OPEN", "ORGAN", "slake")
        for i, a in enumerate(answers)
    ]
    pool = DistractorPool(samples)
    for sample in samples:
        options = make_options(sample, pool, random.Random(seed), max_distractors=3)
        keys = [normalize_answer(o) for o in options]
        assert sample.answer.strip() in options and len(set(keys)) == len(keys) <= 4
        assert keys.count(normalize_answer(sample.answer)) == 1


def test_summary_and_skipped_empty_answers(tmp_path: Path) -> None:
    train = [
        slake_record(1, "xmlab0/source.jpg", "What modality?", "MRI"),
        slake_record(2, "xmlab0/source.jpg", "Does the picture contain liver?", "", answer_type="CLOSED"),
        slake_record(3, "xmlab1/source.jpg", "Is this a CT?", "No", answer_type="CLOSED"),
    ]
    root = make_slake(tmp_path / "slake", train=train)
    summary, records = _build(tmp_path, [f"slake={root}"])
    part = summary["parts"][0]
    assert [r["qid"] for r in records] == [1, 3] and part["skipped_empty_answer"] == ["2"]
    assert part["n_closed"] == 1 and part["n_open"] == 1 and part["prompts_per_template"]["3"] == 1
    assert part["options"] == {"yes_no": 1, "by_count": {"1": 1, "2": 1}}
    assert summary["templates"]["name"] == "mile" and summary["out_path"].endswith("out-0.json")


def test_per_source_splits_and_parse(tmp_path: Path, rad_root: Path, slake_root: Path) -> None:
    source = InstructionSource.parse(f"vqa_rad:train,test={rad_root}")
    assert source.dataset == "vqa_rad" and source.splits == ("train", "test")
    summary, records = _build(tmp_path, [source, f"slake={slake_root}"], split="validate")
    assert [(p["dataset"], p["split"]) for p in summary["parts"]] == [
        ("vqa_rad", "train"), ("vqa_rad", "test"), ("slake", "validate"),
    ]  # fmt: skip
    assert {r["split"] for r in records} == {"train", "test", "validate"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("vqa_rad", "expected NAME=ROOT"),
        ("generic=/tmp", r"cannot build instruction data from dataset 'generic'; valid: \['slake'"),
    ],
)
def test_bad_sources(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        build_instruction_data([source], "train", tmp_path / "x.json")


def test_overlapping_inputs_refused(tmp_path: Path, rad_root: Path) -> None:
    sources = [f"vqa_rad={rad_root}", f"vqa_rad_public:public={rad_root}"]
    with pytest.raises(DataError, match=r"occur twice .*vqa_rad:1"):
        build_instruction_data(sources, "train", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_custom_template_file(tmp_path: Path, rad_root: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\ntemplates:\n  - {id: 1, text: 'Q: $question'}\n  - {id: 2, text: '$question ($options)'}\n"
    )
    summary, records = _build(tmp_path, [f"vqa_rad={rad_root}"], templates_file=path)
    assert summary["templates"]["name"] == "two"
    assert records[0]["question_pool"][0] == "Q: Are regions of the brain infarcted?"
