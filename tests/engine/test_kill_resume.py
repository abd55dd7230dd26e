"""A training process killed (SIGKILL) at chosen moments resumes to the same final weights and metrics: mid-epoch,
right at an epoch boundary, and during the final evaluation (the slow suite's test_chaos.py kills at random)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

CONFIG = """
model: {size: tiny, image_size: 32}
plan: {vision: full, text_encoder: full, text_decoder: {method: lora, r: 4}}
data: {dataset: demo, limit: 32}
train: {epochs: 2, batch_size: 4, lr: 0.001, log_every: 1, seed: 3, checkpoint_every: 1}
eval: {batch_size: 32, num_beams: 1, max_new_tokens: 3}
"""
STEPS_PER_EPOCH = 8  # 32 questions in batches of 4


def _cmd(cfg, out, name):
    return [sys.executable, "-m", "mile", "train", str(cfg), f"run.output_dir={out}", f"run.name={name}"]


def _last_step(run):
    try:
        return int((run / "checkpoints" / "last").read_text().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


MOMENTS = {
    # name: (the condition that must hold before the kill, what the log must say afterwards)
    "mid-epoch": (lambda run: _last_step(run) >= 3, "resumed from"),
    "epoch boundary": (lambda run: _last_step(run) >= STEPS_PER_EPOCH, "resumed from"),
    "evaluation": (lambda run: (run / "weights" / "manifest.json").is_file(), "resumed from"),
}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    cfg = out / "c.yaml"
    cfg.write_text(CONFIG)
    subprocess.run(_cmd(cfg, out, "whole"), check=True, capture_output=True, timeout=600)
    return cfg, out / "whole"


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(whole, tmp_path, moment):
    cfg, whole_run = whole
    ready, said = MOMENTS[moment]
    broken = tmp_path / "broken"
    proc = subprocess.Popen(
        _cmd(cfg, tmp_path, "broken"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not ready(broken) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run finished before it could be killed ({moment})"
    assert json.loads((broken / "status.json").read_text())["state"] == "running"  # as a killed run leaves it
    resumed = subprocess.run(_cmd(cfg, tmp_path, "broken"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert said in (broken / "log.txt").read_text()
    # the manifest holds the SHA-256 of every weights file: equal manifests, byte-identical weights
    assert (whole_run / "weights" / "manifest.json").read_bytes() == (
        broken / "weights" / "manifest.json"
    ).read_bytes()
    for name in ("eval/test/metrics.json", "eval/test/predictions.jsonl"):
        assert (whole_run / name).read_bytes() == (broken / name).read_bytes(), name
    steps = [json.loads(x)["step"] for x in (broken / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 2 * STEPS_PER_EPOCH + 1))  # each step logged once
