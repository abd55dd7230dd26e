"""`mile sweep --dry-run`: the runs and their trainable parameters, nothing trained; the command's exit codes."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mile.cli.main import app
from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.sweep import load_sweep, run_sweep
from mile.sweep.dryrun import count_runs, format_counts

GRID = {"grid": {"plan": ["F-LoRA_r4-LoRA_r4", "T-T-T"], "train.lr": [1e-4, 5e-5]}}


def test_counts_are_what_the_plan_gives_and_the_status_is_shown(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    run_sweep(sweep, train=fake_train(), echo=lambda _: None, shard=(1, 4))  # run 1 done
    counts = count_runs(sweep, sweep.runs)
    # counted here without mile's accounting or peft: the tiny model's own parameters, plus for LoRA r=4 on q and
    # v of self- and cross-attention in both text towers r * (in + out) per wrapped Linear
    model = MileModel(size_config("tiny", 32))
    base = sum(p.numel() for p in model.parameters())
    wrapped = [
        m
        for name, m in model.named_modules()
        if name.startswith("text_")
        and name.endswith(("self_attn.q", "self_attn.v", "cross_attn.q", "cross_attn.v"))
    ]
    assert len(wrapped) == 2 * 2 * 4  # towers x layers x modules
    lora = sum(4 * (m.in_features + m.out_features) for m in wrapped)
    assert [(c.run.plan, c.trainable, c.total) for c in counts] == [
        ("F-LoRA_r4-LoRA_r4", lora, base + lora),
        ("F-LoRA_r4-LoRA_r4", lora, base + lora),
        ("T-T-T", base, base),
        ("T-T-T", base, base),
    ]
    assert counts[0].pct == pytest.approx(100 * lora / (base + lora)) and counts[2].pct == 100.0
    assert [c.state for c in counts] == ["done", "new", "new", "new"]
    text = format_counts(sweep, counts, (1, 1))
    lines = text.splitlines()
    assert lines[0].startswith(f"sweep {sweep.path}: 4 run(s)") and lines[1].split()[:3] == [
        "#",
        "name",
        "plan",
    ]
    assert "train.lr=1e-4" in lines[2] and lines[2].split()[-3:] == [
        f"{lora:,}",
        f"{base + lora:,}",
        f"{100 * lora / (base + lora):.3f}",
    ]
    assert lines[4].split()[-3:] == [f"{base:,}", f"{base:,}", "100.000"]


def test_weights_that_cannot_be_loaded_fall_back_to_the_size_with_a_note(make_sweep):
    path = make_sweep(
        {"overrides": {"model.init": {"kind": "mile", "path": "PLACEHOLDER"}}, "grid": {"plan": ["T-T-T"]}}
    )
    sweep = load_sweep(path)
    counts = count_runs(sweep, sweep.runs)
    assert counts[0].trainable > 0 and "counted on model.size=tiny" in counts[0].note
    assert "note: counted on model.size=tiny" in format_counts(sweep, counts, (1, 1))


def test_the_command_lists_without_training(make_sweep):
    path = make_sweep(GRID)
    result = CliRunner().invoke(app, ["sweep", str(path), "--dry-run", "--shard", "2/2"])
    assert result.exit_code == 0, result.output
    names = [r.name for r in load_sweep(path).runs]
    assert names[1] in result.output and names[3] in result.output and names[0] not in result.output
    assert "shard 2/2: 2" in result.output and "100.000" in result.output
    assert not (path.parent / "out").exists()


def test_a_real_failing_run_is_recorded_and_the_command_exits_1(make_sweep):
    path = make_sweep(
        {"runs": [{"data.dataset": "vqa_rad", "data.root": "/no/such/root"}, {"train.epochs": 0}]}
    )
    result = CliRunner().invoke(app, ["sweep", str(path)])  # the real train_run
    assert result.exit_code == 1, result.output
    assert (
        "1 trained, 0 skipped (already done), 1 failed" in result.output and "/no/such/root" in result.output
    )
    sweep = load_sweep(path)
    status = json.loads((sweep.run_dir(sweep.runs[0]) / "status.json").read_text())
    assert status["state"] == "failed" and "/no/such/root" in status["error"]
    assert json.loads((sweep.run_dir(sweep.runs[1]) / "status.json").read_text())["state"] == "done"
    records = [json.loads(line) for line in (sweep.output_dir / "sweep.jsonl").read_text().splitlines()]
    assert [r["state"] for r in records] == ["failed", "trained"]


def test_user_errors_exit_2_with_one_message(make_sweep):
    proc = subprocess.run(
        [sys.executable, "-m", "mile", "sweep", str(make_sweep(GRID)), "--shard", "3/2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--shard '3/2'" in proc.stderr
