"""train.early_stopping: decisions from the epoch evaluations on disk, the best weights restored, and a run killed
around a decision resuming to the same result."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from weights_helpers import same_tensors

from mile.config import ConfigError, load_config
from mile.engine.early_stopping import EarlyStopping
from mile.engine.rundir import RunDir

CONFIG = """
model: {size: tiny, image_size: 32}
plan: {vision: full, text_encoder: full, text_decoder: full}
data: {dataset: demo, limit: 24}
train: {epochs: EPOCHS, batch_size: 8, lr: 0.001, schedule: constant, log_every: 1, seed: 5, STOPPING}
eval: {batch_size: 32, num_beams: 1, max_new_tokens: 3}
"""
# min_delta 0.99: no later evaluation can beat the first, so the run stops after epoch 1 + patience (= 3)
STOPPING = "eval_every: 1, early_stopping: {patience: 2, min_delta: 0.99}"
STEPS_PER_EPOCH = 3  # 24 questions in batches of 8


def _stopper(tmp_path, values: dict[int, dict], **section) -> EarlyStopping:
    """An EarlyStopping over fabricated eval/epoch-N/test/metrics.json files."""
    stop = ", ".join(f"{k}: {v}" for k, v in section.items())
    cfg = load_config(
        None, ["train.eval_every=1", f"train.early_stopping={{{stop}}}", "data.eval_splits=[test]"]
    )
    for epoch, metrics in values.items():
        path = tmp_path / "eval" / f"epoch-{epoch}" / "test" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(metrics))
    return EarlyStopping(cfg, RunDir(tmp_path))


def _acc(global_acc, closed=0.0):
    return {
        "global": {"acc": global_acc},
        "rules": {"yesno": {"closed": {"acc": closed}, "open": {"acc": 0.0}}},
    }


def test_the_earliest_best_wins_and_patience_counts_evaluations(tmp_path):
    stopper = _stopper(
        tmp_path, {1: _acc(0.5), 2: _acc(0.6), 3: _acc(0.6), 4: _acc(0.55), 5: _acc(0.9)}, patience=2
    )
    assert stopper.decide(0) is None
    d = stopper.decide(3)
    assert (d.best_epoch, d.since_best, d.stop) == (2, 1, False)  # a tie is no improvement
    d = stopper.decide(4)
    assert (d.best_epoch, d.best_value, d.evaluations, d.since_best, d.stop) == (2, 0.6, 4, 2, True)


def test_min_delta_and_a_named_rule(tmp_path):
    values = {2: _acc(0.9, closed=0.50), 4: _acc(0.1, closed=0.54), 6: _acc(0.1, closed=0.60)}  # eval_every 2
    stopper = _stopper(tmp_path, values, patience=3, min_delta=0.05, metric="yesno.closed")
    d = stopper.decide(6)
    assert (d.best_epoch, d.best_value, d.evaluations, d.since_best) == (6, 0.60, 3, 0)  # 0.54 is within 0.05


def test_config_errors_name_the_keys():
    with pytest.raises(ConfigError, match="set train.eval_every"):
        load_config(None, ["train.early_stopping={}"])
    with pytest.raises(ConfigError, match="early_stopping.split 'validate' is not one of data.eval_splits"):
        load_config(
            None, ["train.eval_every=1", "train.early_stopping={split: validate}", "data.eval_splits=[test]"]
        )


def _cmd(cfg, out, name):
    return [sys.executable, "-m", "mile", "train", str(cfg), f"run.output_dir={out}", f"run.name={name}"]


def _train(tmp_path, name, epochs, stopping):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(CONFIG.replace("EPOCHS", str(epochs)).replace("STOPPING", stopping))
    proc = subprocess.run(_cmd(cfg, tmp_path, name), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, tmp_path / name


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    out = tmp_path_factory.mktemp("stopped")
    return _train(out, "stopped", 6, STOPPING)


def test_stops_after_patience_and_keeps_the_best_weights(stopped, tmp_path):
    cfg, run = stopped
    stats = json.loads((run / "train_stats.json").read_text())
    assert stats["steps"] == 3 * STEPS_PER_EPOCH and stats["epochs"] == 3
    assert stats["early_stopping"]["best_epoch"] == 1 and stats["early_stopping"]["stop"] is True
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["epoch-1", "epoch-2", "epoch-3", "test"]
    # With a constant learning rate, epoch 1 of this run is a whole 1-epoch run: the kept weights must be those
    one_epoch = _train(tmp_path, "one", 1, "eval_every: 0")[1]
    assert same_tensors(run / "weights", one_epoch / "weights")
    assert same_tensors(run / "best", one_epoch / "weights")
    for name in ("eval/test/metrics.json", "eval/test/predictions.jsonl"):  # the final evaluation is of them
        assert (run / name).read_text() == (one_epoch / name).read_text(), name


def _said(run, text):
    log = run / "log.txt"
    return log.is_file() and text in log.read_text()


MOMENTS = {
    # the kill comes once this holds; the resumed run must end as the unbroken one
    "after epoch 2's evaluation": lambda run: (run / "eval/epoch-2/test/metrics.json").is_file(),
    "after the decision to stop": lambda run: _said(run, "without improvement: stopping"),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_killed_around_a_decision_resumes_to_the_same_run(stopped, tmp_path, moment):
    cfg, whole = stopped
    broken = tmp_path / "stopped"
    proc = subprocess.Popen(
        _cmd(cfg, tmp_path, "stopped"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not MOMENTS[moment](broken) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run finished before it could be killed ({moment})"
    resumed = subprocess.run(_cmd(cfg, tmp_path, "stopped"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _said(broken, "resumed from")
    assert (whole / "weights/manifest.json").read_bytes() == (broken / "weights/manifest.json").read_bytes()
    for name in ("eval/test/metrics.json", "eval/test/predictions.jsonl", "best.json"):
        assert (whole / name).read_bytes() == (broken / name).read_bytes(), name
    stats = json.loads((broken / "train_stats.json").read_text())
    assert stats["steps"] == 3 * STEPS_PER_EPOCH
