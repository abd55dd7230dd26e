"""A training process killed (SIGKILL) at a random moment resumes to the same final weights and metrics."""

import json
import os
import random
import signal
import subprocess
import sys
import time

CONFIG = """
model: {size: tiny, image_size: 32}
plan: {vision: full, text_encoder: full, text_decoder: {method: lora, r: 4}}
data: {dataset: demo, limit: 32}
train: {epochs: 2, batch_size: 4, lr: 0.001, log_every: 1, seed: 3, checkpoint_every: 1}
eval: {batch_size: 32, num_beams: 1, max_new_tokens: 3}
"""


def _cmd(cfg, out, name):
    return [sys.executable, "-m", "mile", "train", str(cfg), f"run.output_dir={out}", f"run.name={name}"]


def _last_step(run):
    pointer = run / "checkpoints" / "last"
    try:
        return int(pointer.read_text().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    subprocess.run(_cmd(cfg, tmp_path, "whole"), check=True, capture_output=True, timeout=600)
    rng = random.Random()
    target, delay = rng.randint(2, 13), rng.uniform(0.0, 0.2)
    print(f"killing after step {target} + {delay:.3f}s")  # shown on failure, to reproduce
    broken = tmp_path / "broken"
    proc = subprocess.Popen(
        _cmd(cfg, tmp_path, "broken"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while _last_step(broken) < target and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(_cmd(cfg, tmp_path, "broken"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (broken / "log.txt").read_text()
    whole = tmp_path / "whole"
    # the manifest holds the SHA-256 of every weights file: equal manifests, byte-identical weights
    assert (whole / "weights" / "manifest.json").read_bytes() == (
        broken / "weights" / "manifest.json"
    ).read_bytes()
    metrics = [json.loads((r / "eval" / "test" / "metrics.json").read_text()) for r in (whole, broken)]
    assert metrics[0] == metrics[1]
    assert not list(broken.rglob("*.tmp")), "no partial files are left behind"
