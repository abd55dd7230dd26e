"""scripts/cpu_study.sh: the study's steps in order, split into lanes, the base first, resuming from kept records."""

import json
import shutil
import subprocess
from pathlib import Path

from script_helpers import run_stubbed, stub_root

# the study sweep as `mile sweep --dry-run` lists it (a cut of the real one: two frozen-ViT plans, one that trains
# the ViT, and a plan whose name extends another's)
DRY_RUN = """sweep study.yaml: 8 run(s) in runs/study/slake
 #  name                     plan         varying       status  trainable  total  %
 1  F-T-T-s1-aaaaaaa1        F-T-T        train.seed=1  new     1          2      50.0
 2  F-T-T-s2-aaaaaaa2        F-T-T        train.seed=2  new     1          2      50.0
 3  F-LN-LN-s1-bbbbbbb1      F-LN-LN      train.seed=1  new     1          2      50.0
 4  F-LN-LN-s2-bbbbbbb2      F-LN-LN      train.seed=2  new     1          2      50.0
 5  T-T-LoRA-s1-ccccccc1     T-T-LoRA     train.seed=1  new     1          2      50.0
 6  T-T-LoRA_r4-s1-ddddddd1  T-T-LoRA_r4  train.seed=1  new     1          2      50.0
 7  F-T-T-s3-aaaaaaa3        F-T-T        train.seed=3  new     1          2      50.0
 8  F-LN-LN-s3-bbbbbbb3      F-LN-LN      train.seed=3  new     1          2      50.0
note: counted on model.size=mile-small: init mile not loadable here
"""

# a stub `mile`: logs its calls and leaves what each would (a finished run with weights, a checkpoint, answers);
# a run named in $FAIL fails
STUB = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
finished() {  # RUN_DIR: a finished run
  if [[ " $FAIL " == *" ${1##*/} "* ]]; then mkdir -p "$1"; echo '{"state": "failed"}' > "$1/status.json"; exit 1; fi
  mkdir -p "$1/weights" "$1/eval/validate" && echo '{"state": "done"}' > "$1/status.json"
  echo 'eval: {inference: rank}' > "$1/config.yaml" && echo '{}' > "$1/eval/validate/metrics.json"
  echo '{"wall_s": 1800.0}' > "$1/train_stats.json" && echo '{"cpu_threads": 1}' > "$1/env.json"
}
case $1 in
  sweep) if [[ $* == *--dry-run* ]]; then cat "$DRY"  # a done run is skipped, as `mile sweep` does
         elif ! grep -qs done "runs/study/slake/$4/status.json"; then finished "runs/study/slake/$4"; fi ;;
  train) for a in "$@"; do [[ $a == run.name=* ]] && name=${a#run.name=}; done
         case $2 in configs/study/*) finished runs/study/base ;; *) finished "runs/instruct/$name" ;; esac ;;
  eval) mkdir -p "$2/eval/$4/validate" && echo '{}' > "$2/eval/$4/validate/metrics.json" ;;
  probe) touch "$2/eval/validate/probe.json" ;;
  export) mkdir -p "$3" && echo weights > "$3/model.safetensors" ;;
  instruct) mkdir -p runs/instruct && touch runs/instruct/slake-train.json ;;
esac
"""


def make_root(tmp_path: Path) -> Path:
    root = stub_root(tmp_path, "cpu_study.sh", STUB)
    (root / "dry.txt").write_text(DRY_RUN)
    return root


def run_script(root: Path, *args: str, fail: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """The script's result and the stub's calls but the dry runs (the listing of the sweep's runs)."""
    result, calls = run_stubbed(root, "cpu_study.sh", *args, DRY=str(root / "dry.txt"), FAIL=fail)
    return result, [c for c in calls if "--dry-run" not in c]


STEPS = ["base", "F-T-T-s1", "F-T-T-s2", "F-LN-LN-s1", "F-LN-LN-s2",
         "a-direct-s1", "b-further-s1", "c-mixed-s1", "a-direct-s2", "b-further-s2", "c-mixed-s2",
         "F-T-T-s3", "F-LN-LN-s3", "a-direct-s3", "b-further-s3", "c-mixed-s3",
         "T-T-LoRA-s1", "T-T-LoRA_r4-s1"]  # fmt: skip


def test_steps_run_the_cheap_frozen_vit_runs_first_and_the_vit_training_runs_last(tmp_path):
    result, calls = run_script(make_root(tmp_path), "--list")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == STEPS
    assert calls == []


def test_two_lanes_split_the_steps_and_both_wait_for_one_base(tmp_path):
    root = make_root(tmp_path)
    lanes = {lane: run_script(root, "--lane", lane) for lane in ("1/2", "2/2")}  # one after the other here
    for result, _ in lanes.values():
        assert result.returncode == 0, result.stderr
    calls = {lane: c for lane, (_, c) in lanes.items()}
    # the base once: the second lane finds its export
    assert calls["1/2"][0] == "train configs/study/base-vqa-rad.yaml"
    assert not any("base-vqa-rad" in c for c in calls["2/2"])
    # the steps after the base alternate between the lanes; together they run every grid run
    swept = {lane: [c.split()[3] for c in cs if c.startswith("sweep")] for lane, cs in calls.items()}
    assert swept["1/2"][:2] == ["F-T-T-s1-aaaaaaa1", "F-LN-LN-s1-bbbbbbb1"]
    assert swept["2/2"][:2] == ["F-T-T-s2-aaaaaaa2", "F-LN-LN-s2-bbbbbbb2"]
    runs = {line.split()[1] for line in DRY_RUN.splitlines()[2:-1]}
    assert set(swept["1/2"] + swept["2/2"]) == runs
    assert {p.name for p in (root / "docs/study/runs/study/slake").iterdir()} == runs
    kept = root / "docs/study/runs"
    assert (kept / "study/base/export.sha256").exists() and (kept / "study/base/eval/generate").is_dir()
    for seed in (1, 2, 3):  # each F-T-T run is also the plain row of the workflows; every workflow is kept
        for name in ("plain", "a-direct", "b-further", "c-mixed"):
            assert (kept / f"instruct/{name}-s{seed}/status.json").exists(), (name, seed)
    assert not list(kept.rglob("weights"))


def test_a_step_trains_evaluates_both_modes_probes_and_keeps_then_is_skipped(tmp_path):
    root = make_root(tmp_path)
    result, calls = run_script(root, "T-T-LoRA-s1")
    assert result.returncode == 0, result.stderr
    assert [c.split()[0] for c in calls] == ["train", "probe", "export", "eval", "sweep", "eval", "probe"]
    assert (
        "sweep configs/sweeps/mile-small/study.yaml --only T-T-LoRA-s1-ccccccc1" in calls
    )  # not the _r4 run
    assert "eval runs/study/slake/T-T-LoRA-s1-ccccccc1 --inference generate" in calls
    assert (
        root / "docs/study/runs/study/slake/T-T-LoRA-s1-ccccccc1/eval/generate/validate/metrics.json"
    ).exists()
    shutil.rmtree(root / "runs/study/slake")
    result, calls = run_script(root, "T-T-LoRA-s1")
    assert result.returncode == 0 and calls == [] and "kept: T-T-LoRA-s1-ccccccc1" in result.stdout


def test_on_a_fresh_machine_workflow_b_trains_its_plain_run_again_for_the_weights(tmp_path):
    root = make_root(tmp_path)
    assert run_script(root, "F-T-T-s2")[0].returncode == 0
    shutil.rmtree(root / "runs")  # a fresh machine: the kept records are what it has
    result, calls = run_script(root, "F-T-T-s2", "b-further-s2")
    assert result.returncode == 0, result.stderr
    retrain = "sweep configs/sweeps/mile-small/study.yaml --only F-T-T-s2-aaaaaaa2"
    assert calls[0] == "train configs/study/base-vqa-rad.yaml"  # the base, for its weights
    assert retrain in calls and calls.index(retrain) < calls.index(
        "export runs/study/slake/F-T-T-s2-aaaaaaa2 runs/instruct/plain-export"
    )
    assert any(c.startswith("train configs/instruct/b-further.yaml train.seed=2") for c in calls)


def test_workflow_b_finishes_an_interrupted_plain_run_before_it_starts(tmp_path):
    root = make_root(tmp_path)
    assert run_script(root, "F-T-T-s2")[0].returncode == 0
    plain = root / "runs/study/slake/F-T-T-s2-aaaaaaa2"
    shutil.rmtree(plain / "weights")  # as a lane killed mid-training leaves it
    (plain / "status.json").write_text('{"state": "running"}')
    result, calls = run_script(root, "b-further-s2")
    assert result.returncode == 0, result.stderr
    assert calls[:2] == [
        "instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json",
        "sweep configs/sweeps/mile-small/study.yaml --only F-T-T-s2-aaaaaaa2",  # resumed, then exported
    ]
    assert calls[2] == "export runs/study/slake/F-T-T-s2-aaaaaaa2 runs/instruct/plain-export"


def test_a_failed_step_is_reported_and_the_others_go_on(tmp_path):
    root = make_root(tmp_path)
    result, calls = run_script(root, "F-LN-LN-s1", "F-T-T-s1", fail="F-LN-LN-s1-bbbbbbb1")
    assert result.returncode == 1 and "failed steps: F-LN-LN-s1" in result.stderr
    assert (root / "docs/study/runs/study/slake/F-T-T-s1-aaaaaaa1/status.json").exists()
    assert not (root / "docs/study/runs/study/slake/F-LN-LN-s1-bbbbbbb1").exists()


def test_a_base_that_fails_stops_the_study(tmp_path):
    root = make_root(tmp_path)
    result, calls = run_script(root, "F-T-T-s1", fail="base")
    assert result.returncode != 0 and not any(c.startswith("sweep") for c in calls)


def test_time_sums_the_kept_training_and_estimates_the_rest(tmp_path):
    root = make_root(tmp_path)
    assert run_script(root, "F-T-T-s1")[0].returncode == 0
    stats = root / "docs/study/runs/study/slake/F-T-T-s1-aaaaaaa1/env.json"
    stats.write_text(json.dumps({"cpu_threads": 2}))  # a 2-thread run counts twice its wall time
    result, _ = run_script(root, "--time")
    assert result.returncode == 0, result.stderr
    # base 0.5 h + F-T-T 2 x 0.5 h (plain-s1 is the same record kept twice: counted once)
    assert "kept: 2 steps, 1.5 CPU hours of training" in result.stdout
    listed = dict(line.split()[:2] for line in run_script(root, "--list")[0].stdout.splitlines())
    todo = sum(int(m) for name, m in listed.items() if name not in ("base", "F-T-T-s1"))
    assert f"not kept yet: ~{todo / 60:.1f} h estimated" in result.stdout


def test_an_unknown_option_or_lane_is_an_error(tmp_path):
    root = make_root(tmp_path)
    for args in (["--lane", "3/2"], ["--lanes"]):
        result, calls = run_script(root, *args)
        assert result.returncode == 2 and calls == [], args
