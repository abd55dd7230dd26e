"""scripts/recipe_ablation.sh: each row's command, the base a base-ftt row needs, and resuming from kept records."""

import shutil
import subprocess
from pathlib import Path

from script_helpers import run_stubbed, stub_root

# a stub `mile`: logs its calls; `train ... run.name=N` leaves a finished run, `export RUN OUT` a checkpoint
STUB = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case $1 in
  train) for a in "$@"; do [[ $a == run.name=* ]] && name=${a#run.name=}; done
         mkdir -p runs/recipe/$name/weights runs/recipe/$name/eval/validate
         echo '{"state": "done"}' > runs/recipe/$name/status.json
         echo '{}' > runs/recipe/$name/eval/validate/metrics.json ;;
  export) mkdir -p "$3" && touch "$3/model.safetensors" ;;
esac
"""


def run_script(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    return run_stubbed(root, "recipe_ablation.sh", *args)


def make_root(tmp_path: Path) -> Path:
    return stub_root(tmp_path, "recipe_ablation.sh", STUB)


def test_a_base_row_trains_and_exports_the_base_first_then_resumes_from_kept_records(tmp_path):
    root = make_root(tmp_path)
    result, calls = run_script(root, "base-ftt-s1")
    assert result.returncode == 0, result.stderr
    trains = [c for c in calls if c.startswith("train")]
    assert trains[0].startswith(
        "train configs/vqa_rad/mile-small.yaml plan.vision={method: blocks, layers: [-2, -1]}"
    )
    assert "train.seed=42" in trains[0] and trains[0].endswith("run.name=rad-vit2-s42")
    assert "model.init.path=runs/recipe/rad-vit2-s42-export" in trains[1] and "train.seed=1" in trains[1]
    assert "plan.vision=frozen" in trains[1]
    assert calls.index("export runs/recipe/rad-vit2-s42 runs/recipe/rad-vit2-s42-export") < calls.index(
        trains[1]
    )
    assert "eval runs/recipe/base-ftt-s1 --inference rank" in calls
    assert "probe runs/recipe/base-ftt-s1 --limit 256" in calls
    for name in ("rad-vit2-s42", "base-ftt-s1"):  # records kept, without weights
        assert (root / "docs/recipe/runs" / name / "status.json").exists()
        assert not (root / "docs/recipe/runs" / name / "weights").exists()
    shutil.rmtree(root / "runs")  # a fresh machine: the kept records are what it has
    result, calls = run_script(root, "base-ftt-s1", "rad-vit2-s42")
    assert result.returncode == 0 and calls == [], calls
    assert result.stdout.split().count("kept:") == 2
    shutil.rmtree(
        root / "docs/recipe/runs/base-ftt-s1"
    )  # a new base row: the base is trained again, not kept
    result, calls = run_script(root, "base-ftt-s1")
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in calls] == ["train", "export", "train", "eval", "probe"], calls
    assert calls[0].endswith("run.name=rad-vit2-s42")


def test_rows_are_listed_and_an_unknown_row_is_an_error(tmp_path):
    root = make_root(tmp_path)
    result, _ = run_script(root, "--list")
    assert {"default-s1", "vit2-s2", "vit4-s1", "base-ftt-s2"} <= set(result.stdout.split())
    result, calls = run_script(root, "vit9-s1")
    assert result.returncode != 0 and "unknown row vit9-s1" in result.stderr and calls == []
