"""Instruction-format training in the engine: prompts, the leak guard, the truncation report, mixing sources."""

import json

import pytest

from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.instruct.build import build_instruction_data
from mile.instruct.leaks import LeakError


@pytest.fixture
def instruct_file(tmp_path, demo_data):
    def make(*splits):
        out = tmp_path / f"instruct-{'-'.join(splits)}.json"
        build_instruction_data([f"vqa_rad={demo_data}"], list(splits), out, seed=0)
        return out

    return make


def _instruct(tiny_config, file, demo_data, *extra):
    return tiny_config(
        "data.dataset=instruct",
        f"data.root={file}",
        f"data.options={{image_roots: {{vqa-rad: {demo_data / 'images'}}}}}",
        "data.eval_source={dataset: demo}",
        "data.limit=200",
        "train.epochs=1",
        *extra,
    )


def test_instruction_data_that_holds_the_test_questions_is_refused(
    tiny_config, instruct_file, demo_data, tmp_path
):
    cfg = _instruct(tiny_config, instruct_file("test"), demo_data)
    with pytest.raises(LeakError, match="train/test leak"):
        train_run(cfg, RunDir(tmp_path / "run"))


def test_leaks_can_be_dropped_and_are_reported(tiny_config, instruct_file, demo_data, tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = _instruct(
        tiny_config, instruct_file("train", "test"), demo_data, "data.leaks=drop", "data.limit=1000"
    )
    train_run(cfg, run)
    leaks = run.read_json("leaks.json")["test"]
    assert leaks["action"] == "drop" and leaks["n_leaked"] == 164
    # 391 train + 164 test records: all 164 test ones go, and so do the train records asking a test question about
    # the same image (VQA-RAD's standard split repeats some)
    assert "data: train 378 samples" in (run / "log.txt").read_text()


def test_no_training_data_left_is_a_clear_error(tiny_config, instruct_file, demo_data, tmp_path):
    from mile.data.errors import DataError

    cfg = _instruct(tiny_config, instruct_file("test"), demo_data, "data.leaks=drop")
    with pytest.raises(DataError, match="no training records left"):
        train_run(cfg, RunDir(tmp_path / "run"))


def test_training_on_prompts_writes_the_truncation_report(
    tiny_config, instruct_file, demo_data, tmp_path, monkeypatch
):
    seen = []
    from mile.engine import batches

    real = batches.Collate.__call__

    def spy(self, items):
        seen.extend(it["question"] for it in items)
        return real(self, items)

    monkeypatch.setattr(batches.Collate, "__call__", spy)
    run = RunDir(tmp_path / "run")
    train_run(_instruct(tiny_config, instruct_file("train"), demo_data, "data.leaks=allow"), run)
    lengths = run.read_json("prompt_lengths.json")
    assert lengths["max_len"] == 35 and lengths["all"]["n"] > 0
    assert any(q.startswith("<image>") for q in seen), "training reads instruction prompts"
    evaluated = [
        json.loads(x)["question"]
        for x in (run.eval_dir("test") / "predictions.jsonl").read_text().splitlines()
    ]
    assert not any(q.startswith("<image>") for q in evaluated), "evaluation reads the plain questions"


def test_mixing_plain_and_instruction_records(tiny_config, instruct_file, demo_data, tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = _instruct(
        tiny_config,
        instruct_file("train"),
        demo_data,
        "data.leaks=allow",
        "data.extra_train=[{dataset: demo, split: train}]",
        "data.limit=24",
    )
    train_run(cfg, run)
    assert "train 48 samples" in (run / "log.txt").read_text()


def test_the_probe_asks_the_questions_evaluation_asks(tiny_config, instruct_file, demo_data, monkeypatch):
    from mile.engine.batches import Collate
    from mile.engine.build import build_session
    from mile.engine.datasets import load_split
    from mile.engine.evaluate import eval_dataset
    from mile.engine.probe import probe_inputs

    cfg = _instruct(tiny_config, instruct_file("test"), demo_data, "data.prompts.eval=template")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval_source": None})})
    cfg.data.prompts.template_id = 2
    session = build_session(cfg)
    samples = load_split(cfg, "test").samples[:6]
    asked, real = [], Collate.__call__

    def spy(self, items):
        asked.extend(item["question"] for item in items)
        return real(self, items)

    monkeypatch.setattr(Collate, "__call__", spy)
    probe_inputs(session, samples, batch_size=8)
    evaluated = [eval_dataset(cfg, session, samples)[i]["question"] for i in range(len(samples))]
    assert all(
        q != s.question for q, s in zip(evaluated, samples, strict=True)
    )  # template 2, not the plain one
    assert set(asked) == set(evaluated)


def test_every_evaluation_split_is_guarded_not_only_the_first(
    tiny_config, instruct_file, demo_data, tmp_path
):
    run = RunDir(tmp_path / "run")
    cfg = _instruct(
        tiny_config, instruct_file("test"), demo_data, "data.eval_splits=[train, test]", "data.leaks=allow"
    )
    train_run(cfg, run)
    leaks = run.read_json("leaks.json")  # allowed, but found and reported for every split
    assert set(leaks) == {"train", "test"} and leaks["test"]["n_leaked"] == 164
    assert leaks["train"]["action"] == leaks["test"]["action"] == "allow"


def test_instruction_data_given_as_extra_training_data_is_guarded_too(
    tiny_config, instruct_file, demo_data, tmp_path
):
    options = f"{{image_roots: {{vqa-rad: {demo_data / 'images'}}}}}"
    cfg = tiny_config(
        "data.dataset=demo",
        f"data.extra_train=[{{dataset: instruct, root: {instruct_file('test')}, options: {options}}}]",
        "train.epochs=1",
    )
    with pytest.raises(LeakError, match="train/test leak"):
        train_run(cfg, RunDir(tmp_path / "run"))
