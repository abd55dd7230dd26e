"""Loading instruction records (ours and the authors' release), image roots, bad records, the prompt chooser."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from data_builders import write_json
from instruct_builders import authors_format

from mile.data.errors import DataError
from mile.data.sample import Sample
from mile.instruct.build import build_instruction_data
from mile.instruct.dataset import ImageRoots, PromptChooser, load_instruction
from mile.instruct.registry import load_dataset


@pytest.fixture
def built(tmp_path: Path, rad_root: Path, slake_root: Path) -> tuple[Path, dict[str, Path]]:
    """Our instruction file from the tiny VQA-RAD and SLAKE train splits, and the prefix -> folder mapping."""
    out = tmp_path / "instruct" / "train.json"
    build_instruction_data([f"vqa_rad={rad_root}", f"slake={slake_root}"], "train", out, seed=0)
    return out, {"vqa-rad": rad_root / "images", "slake": slake_root / "imgs"}


def test_round_trip_of_our_records(built: tuple[Path, dict]) -> None:
    out, roots = built
    records = json.loads(out.read_text())
    result = load_instruction(out, image_roots=roots)
    assert result.bad.n_bad == 0 and len(result) == len(records) == 7
    by_id = {s.id: s for s in result.samples}
    assert sorted(by_id)[:2] == ["slake:0", "slake:2"]
    rad = by_id["vqa_rad:1"]
    assert rad.question == "Are regions of the brain infarcted?" and rad.answer == "Yes"
    assert rad.answer_type == "CLOSED" and rad.source == "vqa_rad" and rad.question_type == "PRES"
    assert rad.image == (roots["vqa-rad"] / "synpic1.jpg").resolve()
    assert by_id["slake:2"].image == (roots["slake"] / "xmlab1/source.jpg").resolve()
    assert rad.extra["template_ids"] == [1, 2, 3, 4, 5, 6] and len(rad.extra["question_pool"]) == 6
    assert rad.extra["question_known"] and rad.extra["split"] == "train"


def test_authors_release_format(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, roots = built
    authors = write_json(tmp_path / "authors.json", authors_format(json.loads(out.read_text())))
    raw = json.loads(authors.read_text())
    assert any(isinstance(r["answer"], int) for r in raw)  # numbers as answers, as in their release
    assert {r["img_name"].split("/")[0] for r in raw} == {"vqa-rad", "xmlab0", "xmlab1", "xmlab2"}
    result = load_instruction(authors, image_roots=roots)
    assert result.bad.n_bad == 0 and len(result) == 7
    ours = {s.id: s for s in load_instruction(out, image_roots=roots).samples}
    for sample in result.samples:  # plain question, type and template ids recovered from the prompts alone
        mine = ours[sample.id]
        assert (sample.question, sample.answer, sample.answer_type, sample.image) == (
            mine.question, mine.answer, mine.answer_type, mine.image,
        )  # fmt: skip
        assert sample.extra["template_ids"] == mine.extra["template_ids"]
    assert {s.id: s.answer for s in result.samples}["vqa_rad:3"] == "4"


def test_single_image_folder_layout(built: tuple[Path, dict], tmp_path: Path) -> None:
    """The authors' layout: one folder with `vqa-rad/` and SLAKE's `xmlab*/` side by side, beside the file."""
    out, roots = built
    folder = tmp_path / "release"
    shutil.copytree(roots["vqa-rad"], folder / "vqa-rad")
    shutil.copytree(roots["slake"], folder, dirs_exist_ok=True)
    authors = write_json(folder / "train.json", authors_format(json.loads(out.read_text())))
    result = load_instruction(folder)  # a folder: <split>.json, images relative to it
    assert result.bad.n_bad == 0 and len(result) == 7
    assert {s.source for s in result.samples} == {"vqa_rad", "slake"}
    assert len(load_dataset("instruct", authors)) == 7


def test_bad_records_are_counted(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, roots = built
    good = json.loads(out.read_text())[0]
    bad = [
        good,
        {**good, "qid": 100, "question_pool": "not a list"},
        {**good, "qid": 101, "question_pool": []},
        {**good, "qid": 102, "question_pool": ["ok", 7]},
        {**good, "qid": 103, "img_name": "vqa-rad/missing.jpg"},
        {**good, "qid": 104, "answer": ["a"]},
        {key: value for key, value in good.items() if key != "img_name"} | {"qid": 105},
        {**good, "qid": 106, "answer_type": "MAYBE"},
        good,  # duplicate (source, qid)
    ]
    path = write_json(tmp_path / "bad.json", bad)
    result = load_instruction(path, image_roots=roots)
    assert len(result) == 1 and result.bad.n_records == 9
    assert result.bad.counts == {
        "wrong_type": 3, "empty_question": 1, "missing_image": 1, "missing_field": 1, "bad_value": 1,
        "duplicate_id": 1,
    }  # fmt: skip
    assert result.bad.ids("missing_image") == ["103"]
    with pytest.raises(DataError, match="too many bad records"):
        load_dataset("instruct", path, image_roots=roots)


def test_unknown_prefix_without_default_root(built: tuple[Path, dict]) -> None:
    out, roots = built
    result = load_instruction(out, image_roots={"vqa-rad": roots["vqa-rad"]}, default_root=None)
    assert len(result) == 4 and result.bad.counts == {"bad_value": 3}
    assert "no image root for prefix 'xmlab0'" in result.bad.items[0].detail


def test_path_escapes_are_refused(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, roots = built
    good = json.loads(out.read_text())[0]
    secret = tmp_path / "secret.jpg"
    shutil.copy(roots["vqa-rad"] / "synpic1.jpg", secret)
    link = roots["slake"] / "xmlab9"
    link.symlink_to(tmp_path, target_is_directory=True)
    names = ["vqa-rad/../../../secret.jpg", str(secret), "../../secret.jpg", "xmlab9/secret.jpg"]
    records = [{**good, "qid": i, "img_name": name} for i, name in enumerate(names)]
    result = load_instruction(write_json(tmp_path / "escape.json", records), image_roots=roots)
    assert len(result) == 0 and result.bad.counts == {"path_escape": 4}
    assert "outside the dataset root" in result.bad.items[0].detail


def test_file_shape_errors(tmp_path: Path, built: tuple[Path, dict]) -> None:
    _, roots = built
    with pytest.raises(DataError, match="expected a JSON list"):
        load_instruction(write_json(tmp_path / "obj.json", {"a": 1}), image_roots=roots)
    with pytest.raises(DataError, match=r"record 0 is a JSON str, expected an object with fields img_name"):
        load_instruction(write_json(tmp_path / "str.json", ["x"]), image_roots=roots)
    with pytest.raises(DataError, match="empty mapping"):
        ImageRoots({})
    with pytest.raises(DataError, match="is not a directory"):
        ImageRoots({"slake": tmp_path / "nowhere"})


def test_jsonl_and_prefix_aliases(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, roots = built
    folder = tmp_path / "jl"
    folder.mkdir()
    lines = [json.dumps(r) for r in json.loads(out.read_text())]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    aliased = {"VQA_RAD": roots["vqa-rad"], "slake": roots["slake"]}
    result = load_dataset("instruct", folder, "train", image_roots=aliased, max_bad_fraction=0.0)
    assert len(result) == 7


# ---- the prompt chooser -----------------------------------------------------------------------------------------


def _sample(answer_type: str = "CLOSED") -> Sample:
    ids = [1, 2, 3, 4, 5, 6] if answer_type == "CLOSED" else [1, 2, 4, 5, 6]
    pool = [f"prompt {i}" for i in ids]
    extra = {"question_pool": pool, "template_ids": ids}
    return Sample("vqa_rad:1", Path("/x.jpg"), "plain?", "yes", answer_type, "", "vqa_rad", extra)


def test_random_prompts_are_reproducible_per_seed_epoch_index() -> None:
    sample, chooser = _sample(), PromptChooser(seed=5)
    draws = [chooser(7, sample, epoch) for epoch in range(60)]
    assert draws == [PromptChooser(seed=5)(7, sample, epoch) for epoch in range(60)]  # e.g. after a resume
    assert set(draws) == set(sample.extra["question_pool"])  # every prompt gets drawn
    assert draws != [PromptChooser(seed=6)(7, sample, epoch) for epoch in range(60)]
    assert draws != [chooser(8, sample, epoch) for epoch in range(60)]
    assert pickle.loads(pickle.dumps(chooser)) == chooser  # DataLoader workers


def test_fixed_template_and_plain_question_for_evaluation() -> None:
    closed, open_ = _sample("CLOSED"), _sample("OPEN")
    assert PromptChooser("template", template_id=3)(0, closed, 9) == "prompt 3"
    assert PromptChooser("template", template_id=3)(0, open_, 9) == "plain?"  # no closed-only prompt
    with pytest.raises(DataError, match=r"no prompt of template 3; its ids: \[1, 2, 4, 5, 6\]"):
        PromptChooser("template", template_id=3, fallback="error")(0, open_, 0)
    assert PromptChooser("question")(0, closed, 0) == "plain?"
    plain = Sample("1", Path("/x.jpg"), "plain?", "yes", "CLOSED")
    assert PromptChooser()(0, plain, 0) == "plain?"  # no pool: a plain dataset


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sometimes"}, "unknown prompt mode 'sometimes'"),
        ({"mode": "template"}, "template_id is required"),
        ({"mode": "random", "template_id": 2}, "template_id is required"),
        ({"fallback": "guess"}, "unknown prompt fallback"),
    ],
)
def test_chooser_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PromptChooser(**kwargs)


def test_chooser_fits_the_engine_dataset(built: tuple[Path, dict]) -> None:
    torch = pytest.importorskip("torch")
    from mile.engine.batches import VQADataset

    out, roots = built
    samples = load_instruction(out, image_roots=roots).samples
    chooser = PromptChooser(seed=1)
    dataset = VQADataset(
        samples, transform=lambda path, generator=None: torch.zeros(3, 2, 2), prompts=chooser
    )
    dataset.epoch = 3
    assert [dataset[i]["question"] for i in range(len(dataset))] == [
        chooser(i, s, 3) for i, s in enumerate(samples)
    ]
