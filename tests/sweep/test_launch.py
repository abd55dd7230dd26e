"""Launchers: N runs at once through submitit's local executor, a SLURM job array against fake sbatch / squeue /
sacct on PATH, the status table, and a task interrupted mid-run that submitit requeues and that resumes."""

import json
import os
import shlex
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mile.sweep.launch import LauncherConfig, launcher_config, minutes_of, run_local
from mile.sweep.lock import read_lock
from mile.sweep.runner import LOCKS, run_sweep
from mile.sweep.spec import SweepError, load_sweep
from mile.sweep.status import _expand
from mile.tuning import PlanConfig

TINY = {
    "model": {"size": "tiny", "image_size": 32},
    "data": {"dataset": "demo", "limit": 8},
    "train": {"epochs": 1, "batch_size": 4, "log_every": 1},
    "eval": {"num_beams": 1, "max_new_tokens": 3, "batch_size": 8},
}
GRID = {"plan": ["T-T-T", "F-T-T"], "train.lr": [0.003]}


def write_sweep(folder: Path, out: Path, grid=GRID, base=TINY, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "output_dir": str(out), "grid": grid, **extra}))
    return path


def metrics(out: Path) -> dict[str, dict]:
    return {p.parent.parent.parent.name: json.loads(p.read_text()) for p in out.glob("*/eval/*/metrics.json")}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each local task of two on this 2-core machine: the same arithmetic
    yield
    torch.set_num_threads(before)


def test_local_launcher_trains_three_runs_two_at_a_time_like_a_sequential_sweep(
    tmp_path, monkeypatch, one_thread, mile_cli
):
    grid = {"plan": ["T-T-T", "F-T-T", "T-F-T"]}
    sequential = load_sweep(write_sweep(tmp_path / "a", tmp_path / "seq", grid))
    assert run_sweep(sequential, echo=lambda _: None).count("trained") == 3
    file = write_sweep(tmp_path / "b", tmp_path / "par", grid)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # two jobs: one thread each, as in the sequential runs
    code, out, err = mile_cli("sweep", file, "--launcher", "local", "--jobs", "2")
    assert code == 0, out + err
    assert "3 run(s), 2 at a time (1 thread(s) each)" in out and "3 run(s): 3 trained" in out
    assert all(
        json.loads((p / "status.json").read_text())["state"] == "done" for p in (tmp_path / "par").glob("*-*")
    )
    assert metrics(tmp_path / "par") == metrics(tmp_path / "seq") and len(metrics(tmp_path / "seq")) == 3
    again = mile_cli("sweep", file, "--launcher", "local", "--jobs", "2")
    assert again[0] == 0 and "3 run(s) already done: skipped" in again[1]  # never trains a run twice


FAKE = {
    "sbatch": 'cp "$1" "$FAKE_SLURM/array.sh"; echo "$@" >> "$FAKE_SLURM/sbatch.calls"; echo "Submitted batch job 4242"',
    "srun": "exit 0",
    "squeue": 'cat "$FAKE_SLURM/squeue.out" 2>/dev/null; true',
    "sacct": 'cat "$FAKE_SLURM/sacct.out" 2>/dev/null; true',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch, srun, squeue and sacct on PATH, as shell scripts reading / writing $FAKE_SLURM."""
    state, bin_dir = tmp_path / "slurm", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    for name, body in FAKE.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/bash\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    return state


def test_slurm_launcher_submits_one_array_with_the_resources_and_the_requeue_signal(
    tmp_path, fake_slurm, mile_cli
):
    launcher = {
        "kind": "slurm",
        "partition": "gpu",
        "time": "12:00:00",
        "gpus_per_node": 4,
        "cpus_per_task": 8,
    }
    launcher |= {
        "mem_gb": 64,
        "array_parallelism": 2,
        "sbatch": {"constraint": "a100"},
        "setup": ["module load cuda"],
    }
    grid = {"plan": ["T-T-T", "F-T-T", "T-F-T"]}
    file = write_sweep(tmp_path / "s", tmp_path / "out", grid, launcher=launcher)
    code, out, err = mile_cli("sweep", file, "--account", "lab", "--qos", "high")
    assert code == 0, out + err
    assert "submitted job array 4242, 3 task(s)" in out
    script = (fake_slurm / "array.sh").read_text()
    for line in [
        "#SBATCH --array=0-2%2",  # one task per run, two at once
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",  # the CLI's options join the file's
        "#SBATCH --qos=high",
        "#SBATCH --time=720",
        "#SBATCH --nodes=1",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",  # one process per GPU
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --constraint=a100",
        "#SBATCH --signal=USR2@90",  # submitit's requeue signal, 90 s before the time limit
        "module load cuda",
    ]:
        assert line in script, f"{line!r} not in\n{script}"
    sweep = load_sweep(file)
    launches = [json.loads(line) for line in (tmp_path / "out" / "launches.jsonl").read_text().splitlines()]
    assert launches[0]["runs"] == {run.name: f"4242_{i}" for i, run in enumerate(sweep.runs)}
    (fake_slurm / "squeue.out").write_text("4242_[0-2%2]|PENDING|0:00\n")
    code, out, _ = mile_cli("sweep", file)
    assert code == 0 and "3 run(s) already queued or running (jobs 4242_0, 4242_1, 4242_2)" in out
    assert (
        len((fake_slurm / "sbatch.calls").read_text().splitlines()) == 1
    )  # submitting twice submits nothing


def test_status_table_shows_every_state_with_job_ids_and_the_log_of_a_failure(tmp_path, fake_slurm, mile_cli):
    grid = {"plan": ["T-T-T", "F-T-T", "T-F-T", "F-F-T", "T-T-F"]}
    file = write_sweep(tmp_path / "s", tmp_path / "out", grid, launcher={"kind": "slurm"})
    sweep = load_sweep(file)
    run_sweep(sweep, echo=lambda _: None, only=[sweep.runs[0].name])  # one run really done
    code, out, err = mile_cli("sweep", file, "--only", "F-*", "--only", "T-F-T")
    assert code == 0 and "submitted job array 4242, 3 task(s)" in out, out + err
    (fake_slurm / "squeue.out").write_text("4242_0|RUNNING|1:05\n4242_2|PENDING|0:00\n")
    (fake_slurm / "sacct.out").write_text(
        "4242_0|RUNNING|00:01:05\n4242_1|FAILED|00:00:12\n4242_2|PENDING|00:00:00\n"
    )
    folder = Path(json.loads((tmp_path / "out" / "launches.jsonl").read_text())["folder"])
    log = Path(str(folder).replace("%j", "4242_1")) / "4242_1_0_log.err"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    code, out, _ = mile_cli("sweep", file, "--status")
    assert code == 0
    rows = {line.split()[0]: line.split()[2:] for line in out.splitlines() if line.startswith(("T-", "F-"))}
    names = [run.name for run in sweep.runs]
    assert rows[names[0]][:2] == ["done", "-"]
    assert rows[names[1]][:3] == ["running", "4242_0", "1:05"]
    assert rows[names[2]][:3] == ["failed", "4242_1", "00:00:12"]  # submitted in sweep order: T-F-T second
    assert rows[names[3]][:2] == ["queued", "4242_2"]
    assert rows[names[4]][:2] == ["not", "started"]
    assert "job 4242_1 ended FAILED" in out and "RuntimeError: CUDA out of memory" in out
    assert "5 run(s): 1 done, 1 running, 1 queued, 1 failed, 0 interrupted, 1 not started" in out


def test_a_task_interrupted_mid_run_is_requeued_and_resumes_from_its_checkpoint(
    tmp_path, monkeypatch, one_thread
):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # the task trains on one thread, like the whole run here
    base = {**TINY, "train": {**TINY["train"], "epochs": 3, "checkpoint_every": 1}}
    grid = {"plan": ["T-T-T"]}
    whole = load_sweep(write_sweep(tmp_path / "a", tmp_path / "whole", grid, base))
    run_sweep(whole, echo=lambda _: None)
    sweep = load_sweep(write_sweep(tmp_path / "b", tmp_path / "out", grid, base))
    run = sweep.runs[0]
    lines: list[str] = []
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (
            run_local(sweep, sweep.runs, LauncherConfig(kind="local"), False, lines.append),
            done.set(),
        )
    )
    thread.start()
    rundir, lock = sweep.run_dir(run), sweep.output_dir / LOCKS / f"{run.hash}.lock"
    deadline = time.time() + 300
    while not (rundir / "checkpoints" / "last").exists() and time.time() < deadline:
        time.sleep(0.05)
    holder = read_lock(lock)
    assert holder and not done.is_set(), "the run finished before it could be interrupted"
    os.kill(holder["pid"], signal.SIGUSR2)  # what SLURM sends before a preemption or the time limit
    thread.join(300)
    assert done.is_set() and "1 run(s): 1 trained" in lines[-1], lines
    log = (rundir / "log.txt").read_text()
    assert "resumed from" in log, log[-2000:]
    task_logs = "".join(p.read_text() for p in (tmp_path / "out" / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in task_logs, task_logs[-3000:]  # submitit requeued it: not a restart by hand
    assert metrics(tmp_path / "out") == metrics(tmp_path / "whole")
    first = (whole.run_dir(whole.runs[0]) / "weights" / "manifest.json").read_text()
    assert (rundir / "weights" / "manifest.json").read_text() == first  # the same weights, byte for byte


def test_launcher_options_are_validated_with_the_key_and_the_cli_wins(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, tmp_path / "out", launcher={"kind": "slurm", "partition": "a"}))
    assert launcher_config(sweep, {"partition": "b", "qos": None}).partition == "b"
    with pytest.raises(SweepError, match=r"launcher.jobs: .*greater than or equal to 1"):
        launcher_config(sweep, {"jobs": 0})
    with pytest.raises(SweepError, match=r"launcher.time: .*\[D-\]HH:MM"):
        launcher_config(sweep, {"time": "soon"})
    typo = load_sweep(write_sweep(tmp_path / "x", tmp_path / "out", launcher={"partion": "a"}))
    with pytest.raises(SweepError, match=r"launcher.partion: Extra inputs are not permitted"):
        launcher_config(typo, {})
    assert [minutes_of(v) for v in (90, "90", "1:30", "01:30:00", "1-00:00", "0:00:30", "0:01:30")] == [
        90,
        90,
        90,
        90,
        1440,
        1,
        2,  # 1 min 30 s: SLURM rounds up, so do we
    ]


def test_array_ids_from_squeue_and_sacct_expand_to_tasks():
    assert _expand("4242_[0-2,5%2]") == ["4242_0", "4242_1", "4242_2", "4242_5"]
    assert _expand("4242_7") == ["4242_7"] and _expand("99") == ["99"]


def test_a_run_of_two_processes_gets_its_distributed_environment_from_submitit(
    tmp_path, monkeypatch, one_thread
):
    """tasks_per_node: 2 on the local executor: two gloo processes of batch 4 train as one process of batch 8."""
    base = {**TINY, "data": {"dataset": "demo", "limit": 16}}
    base["train"] = {
        **TINY["train"],
        "mixed_precision": "fp32",
        "seed": 0,
    }  # DDP equals one process to fp32 rounding
    one = load_sweep(write_sweep(tmp_path / "a", tmp_path / "one", {"train.batch_size": [8]}, base))
    run_sweep(one, echo=lambda _: None)
    launcher = {"kind": "local", "tasks_per_node": 2}
    two = load_sweep(
        write_sweep(tmp_path / "b", tmp_path / "two", {"train.batch_size": [4]}, base, launcher=launcher)
    )
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    summary = run_local(two, two.runs, launcher_config(two, {}), False, lambda _: None)
    assert [o.state for o in summary.outcomes] == ["trained"], summary.outcomes
    a, b = ({f"{f.parent.name}:{k}": v for f in sorted((s.run_dir(s.runs[0]) / "weights").rglob("*.safetensors"))
             for k, v in load_file(f).items()} for s in (one, two))  # fmt: skip
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    stats = json.loads((two.run_dir(two.runs[0]) / "train_stats.json").read_text())
    assert stats["samples"] == 16 and stats["steps"] == 2  # two processes of 4 per step


def test_the_readme_slurm_example_is_the_paper_grid_on_four_gpus_per_run(
    tmp_path, fake_slurm, monkeypatch, mile_cli
):
    file = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "slurm" / "paper-4gpu.yaml"
    presets = [yaml.safe_load(p.read_text())["plan"] for p in (file.parents[2] / "paper").glob("*.yaml")]
    sweep = load_sweep(file, tmp_path / "out")
    plans = sorted(PlanConfig.model_validate(p).model_dump_json() for p in presets)
    assert (
        sorted(r.config.plan.model_dump_json() for r in sweep.runs) == plans
    )  # every row of Tables 1-4, once
    assert len(sweep.runs) == 23 and {r.config.train.batch_size for r in sweep.runs} == {5}  # x 4 GPUs = 20
    readme = (file.parents[3] / "README.md").read_text()
    block = readme.split("mile sweep configs/sweeps/slurm/paper-4gpu.yaml --dry-run")[1].split("```")[0]
    submit, follow, report = [shlex.split(line.split("  #")[0]) for line in block.splitlines()[1:] if line]
    assert report[:2] == ["mile", "report"]
    monkeypatch.chdir(file.parents[3])
    out_dir = ["--output-dir", str(tmp_path / "out")]
    code, out, err = mile_cli(*submit[1:], *out_dir)
    assert code == 0 and "submitted job array 4242, 23 task(s)" in out, out + err
    assert "#SBATCH --partition=a100" in (fake_slurm / "array.sh").read_text()  # the command line wins
    (fake_slurm / "sacct.out").write_text("".join(f"4242_{i}|COMPLETED|01:00:00\n" for i in range(23)))
    code, out, _ = mile_cli(*follow[1:], *out_dir)  # --wait: the array has ended...
    assert code == 1 and "23 not started" in out  # ...but no run is done (the fake cluster trained nothing)
    script = (fake_slurm / "array.sh").read_text()
    for line in ("#SBATCH --array=0-22%6", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4"):
        assert line in script
