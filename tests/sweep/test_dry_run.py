"""`mile sweep --dry-run`: the runs and their trainable parameters, nothing trained; the command's exit codes."""

import copy
import json
import subprocess
import sys

from typer.testing import CliRunner

from mile.cli.main import app
from mile.pretrained import build
from mile.sweep import load_sweep, run_sweep
from mile.sweep.dryrun import count_runs, format_counts
from mile.tuning import apply_plan

GRID = {"grid": {"plan": ["F-LoRA_r4-LoRA_r4", "T-T-T"], "train.lr": [1e-4, 5e-5]}}


def test_counts_are_what_the_plan_gives_and_the_status_is_shown(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    run_sweep(sweep, train=fake_train(), echo=lambda _: None, shard=(1, 4))  # run 1 done
    counts = count_runs(sweep, sweep.runs)
    model = build("random", size="tiny", image_size=32).model
    expected = apply_plan(copy.deepcopy(model), "F-LoRA_r4-LoRA_r4").trainable_report()
    assert (counts[0].trainable, counts[0].total) == (expected["trainable"], expected["total"])
    assert counts[2].trainable == counts[2].total and counts[2].pct == 100.0
    assert [c.state for c in counts] == ["done", "new", "new", "new"]
    text = format_counts(sweep, counts, (1, 1))
    lines = text.splitlines()
    assert lines[0].startswith(f"sweep {sweep.path}: 4 run(s)") and lines[1].split()[:3] == [
        "#",
        "name",
        "plan",
    ]
    assert "train.lr=1e-4" in lines[2] and f"{expected['trainable']:,}" in lines[2] and "100.000" in lines[4]


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
