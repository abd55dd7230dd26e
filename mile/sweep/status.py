"""`mile sweep SWEEP --status`: every run's state in one table, from its run directory, its lock and, for runs
submitted to SLURM, the scheduler (squeue for live jobs, sacct for ended ones).

States: `done`; `running` (a live lock, or SLURM says so); `queued` (submitted, waiting); `failed` (the run or
its job failed: the table shows why, with the last lines of its log); `interrupted` (started, not done, and
nothing holds it: the next sweep resumes it); `not started`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mile.atomic import append_line
from mile.engine.rundir import RunDir

from .lock import is_stale, read_lock
from .runner import LOCKS
from .spec import Sweep, SweepRun

STATES = ("done", "running", "queued", "failed", "interrupted", "not started")
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESIZING"}
ACTIVE = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
ENDED_BADLY = {
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
LOG_TAIL = 5
LAUNCHES = "launches.jsonl"
_ARRAY = re.compile(r"^(\d+)_\[([^\]]+)\]$")  # sacct and squeue write waiting array tasks as 4242_[0-3,5%2]


@dataclass
class RunState:
    run: SweepRun
    state: str
    job: str | None = None  # the scheduler's id of the task that trains it
    elapsed: str | None = None
    detail: str | None = None  # why it failed, with the last lines of its log


def record_launch(sweep: Sweep, kind: str, folder: str, jobs: dict[str, str]) -> None:
    """One line per submission in launches.jsonl: which job trains which run."""
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "launcher": kind, "folder": folder, "runs": jobs}
    append_line(sweep.output_dir / LAUNCHES, json.dumps(line))


def latest_jobs(sweep: Sweep) -> dict[str, dict[str, str]]:
    """Run name -> {launcher, job, folder} of its latest submission (launches.jsonl)."""
    jobs: dict[str, dict[str, str]] = {}
    file = sweep.output_dir / LAUNCHES
    lines = file.read_text(errors="replace").splitlines() if file.is_file() else []
    for line in lines:
        try:
            entry = json.loads(line)
            for name, job in entry["runs"].items():
                jobs[name] = {"launcher": entry["launcher"], "job": str(job), "folder": entry["folder"]}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue  # a line cut short by a crash: the submissions before it still count
    return jobs


def run_states(
    sweep: Sweep, runs: list[SweepRun], scheduler: Callable[[list[str]], dict] | None = None
) -> list[RunState]:
    jobs = latest_jobs(sweep)
    slurm_ids = [j["job"] for name, j in jobs.items() if j["launcher"] == "slurm"]
    live = (scheduler or slurm_states)(slurm_ids) if slurm_ids else {}
    return [_state(sweep, run, jobs.get(run.name), live) for run in runs]


def _state(sweep: Sweep, run: SweepRun, job: dict[str, str] | None, live: dict) -> RunState:
    rundir = RunDir(sweep.run_dir(run))
    status = rundir.status() if (rundir.path / "status.json").is_file() else {}
    lock = read_lock(sweep.output_dir / LOCKS / f"{run.hash}.lock")
    job_id = job["job"] if job else None
    scheduled, elapsed = live.get(job_id, (None, None))
    out = RunState(run, "not started", job_id, elapsed)
    if status.get("state") == "done":
        out.state = "done"
    elif (lock is not None and not is_stale(lock)) or scheduled in ACTIVE:
        out.state = "running"
    elif scheduled in QUEUED:
        out.state = "queued"
    elif status.get("state") in ("failed", "unreadable") or scheduled in ENDED_BADLY:
        out.state = "failed"
        out.detail = _why(rundir, status, job, scheduled)
    elif status:
        out.state = "interrupted"
    return out


def _why(rundir: RunDir, status: dict[str, Any], job: dict[str, str] | None, scheduled: str | None) -> str:
    reason = status.get("error") or (f"job {job['job']} ended {scheduled}" if job and scheduled else "failed")
    log = rundir.path / "log.txt"
    if not log.is_file() and job:  # the run never started: the task's own log says why
        log = _task_log(job)
    lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:] if log.is_file() else []
    return "\n".join([reason, *(f"    {line}" for line in lines)])


def _task_log(job: dict[str, str]) -> Path:
    from submitit.core.utils import JobPaths

    return JobPaths(job["folder"], job_id=job["job"], task_id=0).stderr  # the folder may hold %j


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Job id -> (state, elapsed) from sacct, then squeue (live states win); {} where neither exists."""
    arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    commands = (
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,Elapsed", "-j", arrays],
        ["squeue", "-h", "-r", "-o", "%i|%T|%M", "-j", arrays],
    )
    states: dict[str, tuple[str, str]] = {}
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        for line in done.stdout.splitlines():
            fields = [*line.strip().split("|"), "", ""]
            if fields[0] and fields[1]:
                for one in _expand(fields[0]):
                    states[one] = (fields[1].split()[0], fields[2])
    return states


def _expand(job_id: str) -> list[str]:
    m = _ARRAY.match(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        first, _, last = part.partition("-")
        out += [f"{m.group(1)}_{k}" for k in range(int(first), int(last or first) + 1)]
    return out


def format_states(states: list[RunState]) -> str:
    counts = {s: sum(x.state == s for x in states) for s in STATES}
    rows = [("run", "plan", "state", "job", "elapsed")]
    rows += [(s.run.name, s.run.plan, s.state, s.job or "-", s.elapsed or "-") for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    failed = [f"{s.run.name}: {s.detail}" for s in states if s.detail]
    summary = f"{len(states)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())
    return "\n".join([*lines, *(["", "failed:", *failed] if failed else []), summary])


def wait_for(
    sweep: Sweep, runs: list[SweepRun], echo: Callable[[str], Any], poll_s: float = 30.0
) -> list[RunState]:
    """Print the table whenever a run's state changes, until no run is queued or running."""
    seen = None
    while True:
        states = run_states(sweep, runs)
        now = [(s.run.name, s.state) for s in states]
        if now != seen:
            echo(time.strftime("%H:%M:%S ") + format_states(states))
            seen = now
        if not any(s.state in ("queued", "running") for s in states):
            return states
        time.sleep(poll_s)
