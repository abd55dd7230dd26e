"""Fixtures for report tests: a real tiny study (trained once per session by a sweep) and hand-made run
directories with chosen numbers (for exact checks of the table's arithmetic)."""

import json
from pathlib import Path

import pytest
import yaml

from mile.config import Config
from mile.engine.rundir import RunDir
from mile.sweep import load_sweep, run_sweep
from mile.tuning import parse_plan_notation

TINY_BASE = {
    "model": {"size": "tiny", "image_size": 32},
    "data": {"dataset": "demo", "limit": 8},
    "train": {"epochs": 1, "batch_size": 4, "log_every": 1, "lr": 1e-3},
    "eval": {"num_beams": 1, "max_new_tokens": 3, "batch_size": 8},
}
STUDY = {
    "base": "base.yaml",
    "output_dir": "runs",
    "grid": {"plan": ["F-LoRA_r4-LoRA_r4"], "train.seed": [1, 2]},
    "runs": [
        {"plan": "F-F-PTV2", "train.seed": 1},
        {"plan": "T-T-T", "data.dataset": "vqa_rad", "data.root": "/no/such"},
    ],
}


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """Three tiny real runs (two seeds of one plan, one of another) and one that fails: (runs folder, summary)."""
    root = tmp_path_factory.mktemp("study")
    (root / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))
    spec = {**STUDY, "output_dir": str(root / "runs")}
    (root / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    summary = run_sweep(load_sweep(root / "study.yaml"), echo=lambda _: None)
    assert [o.state for o in summary.outcomes] == ["trained", "trained", "trained", "failed"], summary.text()
    return root / "runs", summary


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Write a run directory by hand: fake_run("a", plan=..., seed=..., acc=metrics(...), ...) -> its path."""
    monkeypatch.setattr("mile.engine.rundir._git_commit", lambda: None)

    def make(
        name,
        plan="T-T-T",
        seed=1,
        lr=1e-4,
        acc=None,
        pct=50.0,
        gpu=None,
        rss=1000.0,
        wall=10.0,
        state="done",
        precision=None,
        stored=None,
    ):
        cfg = Config(plan=parse_plan_notation(plan))
        cfg.train.seed, cfg.train.lr = seed, lr
        run = RunDir(tmp_path / "runs" / name).create(cfg)
        run.set_status(state, **({"error": "Boom: it broke"} if state == "failed" else {}))
        run.write_json(
            "params.json", {"towers": {}, "total": 1000, "trainable": int(10 * pct), "trainable_pct": pct}
        )
        stats = {"wall_s": wall, "samples_per_s": 100.0 / wall, "peak_rss_mb": rss, "peak_allocated_mb": gpu}
        if precision is not None:  # what train_run records: the precision `auto` resolved to
            stats["precision"] = precision
        if stored is not None:  # the size of the run's weights/ (runs before it was measured have none)
            stats["stored_mb"] = stored
        run.write_json("train_stats.json", stats)
        for step in (1, 2, 3):
            run.append_jsonl("train_log.jsonl", {"step": step, "epoch": 1, "loss": 3.0 / step, "lr": lr})
        if acc is not None:
            (run.eval_dir("test")).mkdir(parents=True)
            (run.eval_dir("test") / "metrics.json").write_text(json.dumps(acc))
        return run.path

    return make


@pytest.fixture
def runs_root(tmp_path) -> Path:
    return tmp_path / "runs"
