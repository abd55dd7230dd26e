"""Fixtures for sweep tests: a tiny base config, sweep files in tmp_path, and a fake `train_run` that writes what
a finished run holds (so skip / force / shard / lock logic is tested without training)."""

import threading
from pathlib import Path

import pytest
import yaml

TINY_BASE = {
    "model": {"size": "tiny", "image_size": 32},
    "data": {"dataset": "demo", "limit": 8},
    "train": {"epochs": 1, "batch_size": 8, "log_every": 1},
    "eval": {"num_beams": 1, "max_new_tokens": 3, "batch_size": 8},
}


@pytest.fixture
def make_sweep(tmp_path):
    """Write base.yaml and a sweep file (a mapping; `base` defaults to base.yaml); returns the sweep path."""

    def make(spec: dict, name: str = "study.yaml") -> Path:
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))
        spec = {"base": "base.yaml", "output_dir": str(tmp_path / "out"), **spec}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return make


class FakeTrain:
    """Stands in for train_run: records calls, writes status done (or raises for chosen run names)."""

    def __init__(self, fail: tuple[str, ...] = (), delay: float = 0.0):
        self.calls: list[str] = []
        self.fail, self.delay = fail, delay
        self.lock = threading.Lock()

    def __call__(self, cfg, run, resume=True):
        assert resume is True
        with self.lock:
            self.calls.append(run.path.name)
        if self.delay:
            threading.Event().wait(self.delay)
        if any(f in run.path.name for f in self.fail):
            raise RuntimeError(f"boom in {run.path.name}")
        run.write_json("params.json", {"towers": {}, "total": 10, "trainable": 1, "trainable_pct": 10.0})
        run.set_status("done")
        return {}


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    """env.json's git lookup (two subprocesses) and the full gc between runs: too slow for dozens of fake runs."""
    monkeypatch.setattr("mile.engine.rundir._git_commit", lambda: None)
    monkeypatch.setattr("mile.sweep.runner._free_memory", lambda: None)  # a full gc.collect: 0.2 s a run


@pytest.fixture
def fake_train():
    return FakeTrain
