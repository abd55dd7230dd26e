"""Runs that go wrong end `failed` with a one-line reason, and a `done` run is always usable: diverged weights,
zero epochs, unreadable images, empty data, a full disk, logs after a resume."""

import errno
import json
import shutil

import pytest
import torch
from weights_helpers import saved_tensors

import mile.engine.checkpoint as ckpt
import mile.engine.rundir as rundir
from mile.atomic import WriteError
from mile.data.errors import DataError
from mile.engine.checkpoint import NonFiniteWeights, latest_checkpoint
from mile.engine.inference import answer, evaluate_run, load_trained
from mile.engine.rundir import RunDir
from mile.engine.train import Trainer, train_run
from mile.model.mile import MileModel

BROKEN_IMAGE = "synpic52248.jpg"  # 7 of the demo's 391 training questions, 3 of its 164 test questions


def test_weights_that_turn_nan_fail_the_run_and_are_never_saved(tiny_config, tmp_path, monkeypatch):
    real, calls = MileModel.answer_loss, {"n": 0}

    def poison_weights(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:  # what an exploding update does; the loss of this batch is still finite
            with torch.no_grad():
                next(q for q in self.parameters() if q.requires_grad).fill_(float("nan"))
        return real(self, *args)

    monkeypatch.setattr(MileModel, "answer_loss", poison_weights)
    run = RunDir(tmp_path / "run")
    # skip mode: every later batch is skipped, so only the weight check stands between this and `done`
    with pytest.raises(NonFiniteWeights, match=r"training diverged by step \d+ .*hold NaN or inf"):
        train_run(tiny_config("train.on_nonfinite=skip", "train.checkpoint_every=1"), run)
    status = run.status()
    assert status["state"] == "failed" and "NonFiniteWeights" in status["error"]
    assert "\n" not in status["error"]
    assert not run.weights.exists()
    last = latest_checkpoint(run.checkpoints)
    assert last is not None
    assert all(torch.isfinite(t).all() for t in saved_tensors(last / "weights").values())


def test_zero_epochs_still_gives_a_usable_done_run(tiny_config, tmp_path, demo_data):
    run = RunDir(tmp_path / "run")
    metrics = train_run(tiny_config("train.epochs=0"), run)
    assert run.is_done() and (run.weights / "manifest.json").is_file()
    assert evaluate_run(run, ["test"])["test"] == metrics["test"]
    image = sorted((demo_data / "images").iterdir())[0]
    assert len(answer(load_trained(run), str(image), ["is this a ct?"])) == 1


@pytest.fixture
def broken_demo(tmp_path, demo_data):
    """The demo data with one image truncated to half its bytes."""
    root = tmp_path / "demo"
    shutil.copytree(demo_data, root)
    image = root / "images" / BROKEN_IMAGE
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    return root


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_an_unreadable_image_is_a_bad_record_not_a_crash(tiny_config, tmp_path, broken_demo, cache):
    plan = ["plan.vision=frozen", f"train.feature_cache={cache}"]
    cfg = tiny_config(f"data.root={broken_demo}", "data.limit=null", "train.epochs=1", *plan)
    run = RunDir(tmp_path / "run")
    train_run(cfg, run)
    assert run.is_done()
    report = run.read_json("data_report.json")
    for split, n in (("train", 7), ("test", 3)):
        assert report[split]["counts"] == {"corrupt_image": n}, split
        assert all(BROKEN_IMAGE in item["detail"] for item in report[split]["items"])
    assert run.read_json("eval/test/metrics.json")["n"] == 164 - 3


def test_more_unreadable_images_than_allowed_is_a_clear_error(tiny_config, tmp_path, broken_demo):
    cfg = tiny_config(f"data.root={broken_demo}", "data.max_bad_fraction=0.01")
    with pytest.raises(DataError, match=r"testset.json: 3 of 164 records dropped .*corrupt_image=3"):
        train_run(cfg, RunDir(tmp_path / "run"))


def test_an_empty_data_file_is_named(tiny_config, tmp_path, demo_data):
    root = tmp_path / "demo"
    shutil.copytree(demo_data, root)
    (root / "trainset.json").write_text("[]")
    with pytest.raises(DataError, match=rf"{root / 'trainset.json'}: no usable records for the train split"):
        train_run(tiny_config(f"data.root={root}"), RunDir(tmp_path / "run"))


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_fails_the_run_with_a_one_line_reason(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.torch, "save", _disk_full)
    run = RunDir(tmp_path / "run")
    with pytest.raises(WriteError, match="No space left on device"):
        train_run(tiny_config(), run)
    status = run.status()
    assert status["state"] == "failed" and status["error"].startswith("WriteError: cannot write ")
    assert "\n" not in status["error"] and "disk is full" in status["error"]


def test_the_status_is_written_even_when_only_the_reserve_is_left(tiny_config, tmp_path, monkeypatch):
    """A disk that fills up during the run: status.json can only be written once the reserve is given up."""
    real = rundir.atomic_write_json
    refused = []

    def full_until_the_reserve_goes(target, data):
        if (
            target.name == "status.json"
            and (target.parent / rundir.RESERVE).exists()
            and data["state"] != "running"
        ):
            refused.append(data["state"])
            raise WriteError(f"cannot write {target}: No space left on device")
        return real(target, data)

    monkeypatch.setattr(rundir, "atomic_write_json", full_until_the_reserve_goes)
    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1"), run)
    assert refused == ["done"] and run.is_done() and not (run / rundir.RESERVE).exists()


def test_when_nothing_can_be_written_the_failure_goes_to_stderr(tmp_path, capsys, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    monkeypatch.setattr(rundir, "atomic_write_json", lambda target, data: _disk_full())
    run.record_failure(RuntimeError("first\nsecond line"))
    assert f"could not mark {run.path} failed" in capsys.readouterr().err


def test_a_resumed_run_logs_each_step_once(tiny_config, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config("train.epochs=2", "train.checkpoint_every=2")
    whole, broken = RunDir(tmp_path / "whole"), RunDir(tmp_path / "broken")
    train_run(cfg, whole)
    real = Trainer.step

    def die_after_step_3(self, batch):  # logged steps 1-3, checkpoint at 2: step 3 is logged again
        real(self, batch)
        if self.progress.step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "step", die_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, broken)
    monkeypatch.setattr(Trainer, "step", real)
    train_run(cfg, broken)
    steps = {
        r: [json.loads(x)["step"] for x in (r / "train_log.jsonl").read_text().splitlines()]
        for r in (whole, broken)
    }
    assert steps[broken] == steps[whole] == list(range(1, 7))
    assert "1 log records after step 2 dropped" in (broken / "log.txt").read_text()
    events = EventAccumulator(str(broken / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))


@pytest.mark.parametrize("text", ["{garbled", "[1, 2]", '{"time": "x"}'])
def test_a_garbled_status_is_never_taken_for_done(tmp_path, text):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run / "status.json").write_text(text)
    assert run.status()["state"] == "unreadable" and not run.is_done()
