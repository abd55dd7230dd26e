"""Where a sweep's runs train: `sequential` (this process, one after another: mile.sweep.runner), `local` (N runs
at once on this machine) or `slurm` (one SLURM job array), the last two through submitit.

    launcher: {kind: slurm, partition: gpu, time: "12:00:00", gpus_per_node: 4, cpus_per_task: 8, mem_gb: 64}

Every submitted task trains one run through runner.run_one, so the per-run lock, the done -> skip rule and resume
are those of a sequential sweep, and submitting twice never trains a run twice. A task that SLURM preempts or
times out is requeued by submitit (RunTask is Checkpointable) and resumes from the run's last checkpoint. A run
with several processes (GPUs, nodes) gets torch.distributed's environment from submitit's job environment, as
torchrun would give it; accelerate then trains it as under torchrun.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import submitit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .runner import WAY_OUT, Outcome, SweepSummary, check_existing, check_init_paths, record, run_one
from .spec import Sweep, SweepError, SweepRun
from .status import record_launch, run_states

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor stops a job after its timeout (default 2 min)
_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d\d)(?::(\d\d))?$")  # SLURM's [D-]HH:MM[:SS]


class LauncherConfig(BaseModel):
    """The sweep file's `launcher:` mapping, with the CLI's options over it."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sequential", "local", "slurm"] = "sequential"
    jobs: int = Field(1, ge=1, le=1024)  # local: runs at once (one GPU each where there are GPUs)
    folder: str | None = None  # submitit's logs and job pickles; default <output_dir>/.submitit
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | str = 240  # per task: minutes, or SLURM's [D-]HH:MM[:SS]
    nodes: int = Field(1, ge=1, le=4096)
    gpus_per_node: int = Field(0, ge=0, le=64)
    tasks_per_node: int | None = Field(None, ge=1, le=256)  # processes per node; default one per GPU
    cpus_per_task: int | None = Field(None, ge=1, le=1024)
    mem_gb: float | None = Field(None, gt=0)
    array_parallelism: int = Field(256, ge=1)  # tasks of the array running at once
    max_requeues: int = Field(3, ge=0, le=1000)  # after timeouts (preemptions requeue without limit)
    sbatch: dict[str, str | int | bool] = Field(
        default_factory=dict
    )  # extra #SBATCH options, e.g. constraint
    setup: list[str] = Field(default_factory=list)  # shell lines before each task, e.g. `module load cuda`

    @field_validator("time")
    @classmethod
    def _time(cls, value: int | str) -> int | str:
        minutes_of(value)
        return value

    @property
    def processes_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


def minutes_of(value: int | str) -> int:
    """240, "240", "12:00:00", "1-00:00" -> minutes (at least 1)."""
    if isinstance(value, int) or str(value).isdigit():
        if int(value) < 1:
            raise ValueError(f"expected at least 1 minute, got {value!r}")
        return int(value)
    m = _TIME.match(str(value))
    if not m:
        raise ValueError(f"expected minutes or [D-]HH:MM[:SS], got {value!r}")
    days, hours, mins, secs = (int(g or 0) for g in m.groups())
    return max(1, days * 1440 + hours * 60 + mins + (secs + 59) // 60)


def launcher_config(sweep: Sweep, options: dict[str, Any]) -> LauncherConfig:
    """The sweep file's `launcher:` mapping with `options` (the CLI's, None meaning not given) over it."""
    given = {**sweep.launcher, **{k: v for k, v in options.items() if v is not None}}
    try:
        return LauncherConfig.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"launcher.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise SweepError(f"sweep {sweep.path}: {problems}") from None


class RunTask(submitit.helpers.Checkpointable):
    """One run of a sweep, as a submitit task. On preemption or timeout submitit requeues it as it is then
    (Checkpointable), with `force` spent, so the requeued task resumes the run from its last checkpoint."""

    def __init__(self, sweep_file: Path, output_dir: Path, run: SweepRun, force: bool, threads: int | None):
        self.sweep_file, self.output_dir = str(Path(sweep_file).resolve()), str(Path(output_dir).resolve())
        self.run_hash, self.run_name, self.force, self.threads = run.hash, run.name, force, threads
        self.cwd = os.getcwd()  # the sweep's relative paths resolve from where it was submitted

    def __call__(self) -> dict[str, Any]:
        import torch

        from mile.engine.train import train_run
        from mile.sweep.spec import load_sweep

        os.chdir(self.cwd)
        if self.threads:
            torch.set_num_threads(self.threads)
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        sweep = load_sweep(self.sweep_file, self.output_dir)
        matches = [r for r in sweep.runs if r.hash == self.run_hash]
        if not matches:
            raise SweepError(
                f"sweep {self.sweep_file}: run {self.run_name} is no longer in the sweep (edited?)"
            )
        force, self.force = self.force, False  # a requeued task resumes; only the first start may restart
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            return _distributed(sweep, matches[0], force, train_run)
        outcome = run_one(sweep, matches[0], force, train_run)
        record(sweep, outcome, (1, 1))
        return _outcome_json(outcome)


def _distributed(sweep: Sweep, run: SweepRun, force: bool, train: Callable[..., Any]) -> dict[str, Any]:
    """Several processes train one run: rank 0 takes the lock and decides (train / skip), then all train."""
    import torch
    import torch.distributed as dist

    from mile.engine.rundir import RunDir

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")  # accelerate takes it over
    decided = [False]

    def tell(action: str) -> None:
        decided[0] = True
        dist.broadcast_object_list([action], src=0)

    def train_all(cfg: Any, rundir: RunDir, resume: bool = True) -> None:
        tell("train")
        train(cfg, rundir, resume=resume)

    if env.rank == 0:
        outcome = run_one(sweep, run, force, train_all)
        if not decided[0]:
            tell("skip")
        record(sweep, outcome, (1, 1))
        return _outcome_json(outcome)
    action = [None]
    dist.broadcast_object_list(action, src=0)
    if action[0] == "train":
        train(run.config, RunDir(sweep.run_dir(run)), resume=True)
    return {"run": run.name, "state": f"rank {env.rank}", "error": None}


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {"run": outcome.run.name, "state": outcome.state, "error": outcome.error, "wall_s": outcome.wall_s}


def _executor(sweep: Sweep, launcher: LauncherConfig) -> Any:
    folder = Path(launcher.folder or sweep.output_dir / ".submitit") / "%j"
    common = {"nodes": launcher.nodes, "tasks_per_node": launcher.processes_per_node}
    if launcher.kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=common["tasks_per_node"])
        return executor
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise SweepError(
            f"sweep {sweep.path}: launcher kind slurm needs SLURM's {' and '.join(missing)} on PATH "
            "(submit from a login node of the cluster)"
        )
    executor = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=launcher.max_requeues)
    optional = {"cpus_per_task": launcher.cpus_per_task, "mem_gb": launcher.mem_gb}
    slurm = {"partition": launcher.partition, "account": launcher.account, "qos": launcher.qos}
    executor.update_parameters(
        name=f"mile-{sweep.path.stem}",
        timeout_min=minutes_of(launcher.time),
        gpus_per_node=launcher.gpus_per_node,
        slurm_array_parallelism=launcher.array_parallelism,
        slurm_additional_parameters=dict(launcher.sbatch),
        slurm_setup=list(launcher.setup),
        **common,
        **{k: v for k, v in optional.items() if v is not None},
        **{f"slurm_{k}": v for k, v in slurm.items() if v is not None},
    )
    return executor


def _to_submit(
    sweep: Sweep, runs: list[SweepRun], force: bool, echo: Callable[[str], Any], way_out: str
) -> list[SweepRun]:
    """The runs a submission starts: not done (unless forced), not already queued or running."""
    check_init_paths(sweep, runs)
    if not force:
        check_existing(sweep, runs, way_out)
    states = {s.run.name: s for s in run_states(sweep, runs)}
    busy = [r for r in runs if states[r.name].state in ("queued", "running")]
    done = [] if force else [r for r in runs if states[r.name].state == "done"]
    if busy:
        jobs = ", ".join(sorted({states[r.name].job or "?" for r in busy}))
        echo(f"{len(busy)} run(s) already queued or running (jobs {jobs}): not submitted again")
    if done:
        echo(f"{len(done)} run(s) already done: skipped")
    return [r for r in runs if r not in busy and r not in done]


def submit_slurm(
    sweep: Sweep,
    runs: list[SweepRun],
    launcher: LauncherConfig,
    force: bool,
    echo: Callable[[str], Any],
    way_out: str = WAY_OUT,
) -> dict[str, str]:
    """Submit the runs that need training as one job array; returns run name -> SLURM job id."""
    runs = _to_submit(sweep, runs, force, echo, way_out)
    if not runs:
        echo(f"sweep {sweep.path}: nothing to submit")
        return {}
    executor = _executor(sweep, launcher)
    with executor.batch():
        jobs = [executor.submit(RunTask(sweep.path, sweep.output_dir, r, force, None)) for r in runs]
    ids = {run.name: job.job_id for run, job in zip(runs, jobs, strict=True)}
    record_launch(sweep, "slurm", str(executor.folder), ids)
    array = jobs[0].job_id.split("_")[0]
    echo(f"sweep {sweep.path}: submitted job array {array}, {len(runs)} task(s) -> {sweep.output_dir}")
    return ids


def run_local(
    sweep: Sweep,
    runs: list[SweepRun],
    launcher: LauncherConfig,
    force: bool,
    echo: Callable[[str], Any],
    way_out: str = WAY_OUT,
    poll_s: float = 1.0,
) -> SweepSummary:
    """Train the runs `launcher.jobs` at a time, each in its own process; waits for all of them."""
    import torch

    runs = _to_submit(sweep, runs, force, echo, way_out)
    gpus = list(range(torch.cuda.device_count()))
    jobs = min(launcher.jobs, len(gpus)) if gpus else launcher.jobs
    threads = None if gpus else max(1, (os.cpu_count() or 1) // jobs)
    split = f"one GPU each of {len(gpus)}" if gpus else f"{threads} thread(s) each"
    echo(f"sweep {sweep.path}: {len(runs)} run(s), {jobs} at a time ({split}) -> {sweep.output_dir}")
    executor = _executor(sweep, launcher)
    summary = SweepSummary(sweep, (1, 1))
    pending, active, free = list(runs), {}, list(gpus)
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            gpu = free.pop(0) if gpus else None
            if gpu is not None:
                executor.update_parameters(visible_gpus=[gpu], gpus_per_node=1)
            job = executor.submit(RunTask(sweep.path, sweep.output_dir, run, force, threads))
            record_launch(sweep, "local", str(executor.folder), {run.name: job.job_id})
            active[job] = (run, gpu)
            echo(f"{run.name}: started (job {job.job_id}{'' if gpu is None else f', GPU {gpu}'})")
        time.sleep(poll_s)
        for job in [j for j in active if j.done()]:
            run, gpu = active.pop(job)
            if gpu is not None:
                free.append(gpu)
            summary.outcomes.append(_local_outcome(run, job))
            echo(f"{run.name}: {summary.outcomes[-1].state}" + _error_text(summary.outcomes[-1]))
    echo(summary.text())
    return summary


def _local_outcome(run: SweepRun, job: Any) -> Outcome:
    error = job.exception()
    if error is not None:  # the task itself failed (not the run, which run_one records): its log says why
        return Outcome(run, "failed", f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}")
    result = job.results()[0]  # rank 0's, where a run has several processes
    return Outcome(run, result["state"], result["error"], result.get("wall_s", 0.0))


def _error_text(outcome: Outcome) -> str:
    return f" ({outcome.error})" if outcome.error else ""
