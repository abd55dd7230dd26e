"""prepare_run: what a run directory needs before training (done, refused, restarted, fresh or resumed)."""

from pathlib import Path

import pytest

from mile.config import ConfigError
from mile.engine.lifecycle import Prepared, RunConflict, default_run_dir, prepare_run
from mile.engine.rundir import RunDir
from mile.engine.train import train_run


def snapshot(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def written_run(path: Path, cfg, state: str | None) -> RunDir:
    """A run directory as training leaves it, written by hand: config, env, a checkpoint file, a status."""
    run = RunDir(path).create(cfg)
    (run.checkpoints / "epoch-1").mkdir(parents=True)
    (run.checkpoints / "epoch-1" / "state.pt").write_bytes(b"x")
    if state:
        run.set_status(state)
    return run


def test_a_done_run_is_done_and_left_untouched(tiny_config, tmp_path):
    cfg = tiny_config()
    run = written_run(tmp_path / "run", cfg, "done")
    before = snapshot(run.path)
    assert prepare_run(run, cfg, restart=False) == Prepared("done", deleted=False)
    assert snapshot(run.path) == before


def test_another_config_is_refused_naming_the_key_and_the_callers_way_out(tiny_config, tmp_path):
    run = written_run(tmp_path / "run", tiny_config(), "done")
    before = snapshot(run.path)
    with pytest.raises(RunConflict) as err:
        prepare_run(run, tiny_config("train.lr=0.5"), restart=False, way_out="Pass --again.")
    message = str(err.value)
    assert isinstance(err.value, ConfigError)  # a user error: one line, exit code 2
    assert "train.lr (run: 0.001, now: 0.5)" in message and str(run.path) in message
    assert message.endswith("Pass --again.") and err.value.path == run.path
    assert snapshot(run.path) == before


@pytest.mark.parametrize("state", ["done", "failed", None])
def test_restart_deletes_the_old_contents_whatever_they_hold(tiny_config, tmp_path, state):
    run = written_run(tmp_path / "run", tiny_config(), state)
    assert prepare_run(run, tiny_config("train.lr=0.5"), restart=True) == Prepared("train", deleted=True)
    assert not run.path.exists()


def test_restart_of_a_missing_or_empty_directory_deletes_nothing(tiny_config, tmp_path):
    assert prepare_run(tmp_path / "new", tiny_config(), restart=True) == Prepared("train", deleted=False)
    (tmp_path / "empty").mkdir()
    assert prepare_run(str(tmp_path / "empty"), tiny_config(), restart=True) == Prepared("train")
    assert (tmp_path / "empty").is_dir() and not (tmp_path / "new").exists()


@pytest.mark.parametrize("state", ["running", "failed", None])
def test_fresh_and_unfinished_runs_train_and_keep_their_checkpoints(tiny_config, tmp_path, state):
    cfg = tiny_config()
    assert prepare_run(tmp_path / "fresh", cfg, restart=False) == Prepared("train")
    assert not (tmp_path / "fresh").exists()  # deciding writes nothing
    run = written_run(tmp_path / "partial", cfg, state)
    before = snapshot(run.path)
    assert prepare_run(run, cfg, restart=False) == Prepared("train")
    assert snapshot(run.path) == before


def test_an_unreadable_status_is_not_done(tiny_config, tmp_path):
    cfg = tiny_config()
    run = written_run(tmp_path / "run", cfg, None)
    (run / "status.json").write_text("{not json")
    assert prepare_run(run, cfg, restart=False).action == "train"


def test_a_real_run_through_its_lifecycle(tiny_config, tmp_path):
    cfg = tiny_config("train.epochs=1")
    run = RunDir(tmp_path / "run")
    assert prepare_run(run, cfg, restart=False).action == "train"
    train_run(cfg, run)
    assert prepare_run(run, cfg, restart=False).action == "done"
    with pytest.raises(RunConflict, match=r"train\.epochs \(run: 1, now: 2\)"):
        prepare_run(run, tiny_config("train.epochs=2"), restart=False)
    assert prepare_run(run, tiny_config("train.epochs=2"), restart=True).deleted and not run.path.exists()


def test_default_run_dir_names_plan_dataset_and_seed(tiny_config):
    cfg = tiny_config("plan.vision=frozen", "plan.text_decoder=lora", "train.seed=3", "run.output_dir=out")
    assert default_run_dir(cfg) == Path("out") / "F-T-LoRA-demo-s3"
    assert default_run_dir(tiny_config("run.name=mine", "run.output_dir=out")) == Path("out") / "mine"
