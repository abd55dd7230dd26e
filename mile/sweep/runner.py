"""Running a sweep: the runs of one shard in order; done runs skipped, failures recorded, one lock per run.

- Each run directory goes through mile.engine.lifecycle.prepare_run, as in `mile train`: a `done` run is
  skipped, any other trains with `resume=True` (from its last checkpoint); `force` trains it from scratch.
- A run directory whose config.yaml differs from the sweep's resolved config is an error naming the run and the
  keys, raised before anything trains (never silently mix configs).
- A failing run is marked failed (status.json with the error, the traceback in its log.txt) and the sweep goes
  on; every outcome is a line in `<output>/sweep.jsonl`.
- `shard=(i, n)`: the runs at positions i, i+n, i+2n, ... (1-based), so n machines sharing the output folder
  split the sweep; the per-run lock (mile.sweep.lock) keeps overlapping sweeps apart.
- `only`: shell patterns over the plan notation or the run name (`F-*`, `T-T-T`), in sweep order; one that
  matches no run of the sweep is an error listing the plans.
"""

from __future__ import annotations

import fnmatch
import gc
import json
import os
import re
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mile.engine.lifecycle import RunConflict, prepare_run
from mile.engine.rundir import RunDir

from .lock import STALE_AFTER_S, RunLock, describe_holder, read_lock
from .spec import Sweep, SweepError, SweepRun

LOCKS = ".locks"
RECORD = "sweep.jsonl"
TrainFn = Callable[..., Any]  # train_run(cfg, run, resume=True)
# What to do about a run directory of another config; a front end passes its own words (the CLI names --force).
WAY_OUT = "Use another output_dir, or force a retrain from scratch."


@dataclass
class Outcome:
    run: SweepRun
    state: str  # trained | skipped (already done) | failed | locked (another sweep is running it)
    error: str | None = None
    wall_s: float = 0.0


@dataclass
class SweepSummary:
    sweep: Sweep
    shard: tuple[int, int]
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    def text(self) -> str:
        i, n = self.shard
        shard = f" (shard {i}/{n})" if n > 1 else ""
        lines = [
            f"sweep {self.sweep.path}{shard}: {len(self.outcomes)} run(s): {self.count('trained')} trained, "
            f"{self.count('skipped')} skipped (already done), {self.count('failed')} failed, "
            f"{self.count('locked')} running elsewhere; outcomes in {self.sweep.output_dir / RECORD}"
        ]
        lines += [f"  failed: {o.run.name}: {o.error}" for o in self.failed]
        return "\n".join(lines)


def parse_shard(text: str | None, what: str = "shard") -> tuple[int, int]:
    """`i/n` with 1 <= i <= n (i counts from 1); None or empty: the whole sweep. Errors name it `what`."""
    if not text:
        return (1, 1)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise SweepError(f"{what} {text!r}: expected i/n with 1 <= i <= n, e.g. 1/4 (i counts from 1)")
    return int(m.group(1)), int(m.group(2))


def select_shard(runs: list[SweepRun], shard: tuple[int, int]) -> list[SweepRun]:
    i, n = shard
    return runs[i - 1 :: n]


def select_runs(
    sweep: Sweep, shard: tuple[int, int], only: list[str] | None, what: str = "only"
) -> list[SweepRun]:
    """The runs a sweep invocation trains (or lists): the shard's whose plan notation or name matches any
    pattern of `only` (None or empty: all of them); `what` names `only` in the error."""
    runs = select_shard(sweep.runs, shard)
    if not only:
        return runs

    def hits(run: SweepRun, pattern: str) -> bool:
        return fnmatch.fnmatchcase(run.plan, pattern) or fnmatch.fnmatchcase(run.name, pattern)

    unmatched = [p for p in only if not any(hits(r, p) for r in sweep.runs)]
    if unmatched:
        plans = ", ".join(dict.fromkeys(r.plan for r in sweep.runs))
        raise SweepError(
            f"{what} {', '.join(unmatched)}: matches no run of the sweep; its plans are: {plans}"
        )
    return [r for r in runs if any(hits(r, p) for p in only)]


def check_existing(sweep: Sweep, runs: list[SweepRun], way_out: str = WAY_OUT) -> None:
    """Refuse to start when any run directory holds another config than the sweep's."""
    whys = {run.name: RunDir(sweep.run_dir(run)).config_mismatch(run.config) for run in runs}
    problems = [f"  {name}: {why}" for name, why in whys.items() if why]
    if problems:
        raise SweepError(
            f"sweep {sweep.path}: {len(problems)} run directory(ies) under {sweep.output_dir} hold a different "
            "config than the sweep resolves to (an edited config.yaml, or a changed default?):\n"
            + "\n".join([*problems, way_out])
        )


def check_init_paths(sweep: Sweep, runs: list[SweepRun]) -> None:
    """Refuse to start when initial weights are missing (e.g. a placeholder path left in a sweep file),
    rather than fail every run one by one. Hub ids (blip_hf) are not checked."""
    keys = {"mile": ("path",), "blip_pth": ("path",), "compose": ("vision", "text")}
    missing: dict[str, list[int]] = {}
    for run in runs:
        init = run.config.model.init
        for key in keys.get(init.kind, ()):
            value = getattr(init, key)
            if value is not None and not Path(value).exists():
                missing.setdefault(f"model.init.{key}={value}", []).append(run.index)
    if missing:
        lines = [f"  {what} (runs {', '.join(map(str, idx))})" for what, idx in missing.items()]
        raise SweepError(
            f"sweep {sweep.path}: initial weights not found (relative paths are from {Path.cwd()}):\n"
            + "\n".join(lines)
        )


def run_sweep(
    sweep: Sweep,
    *,
    shard: tuple[int, int] = (1, 1),
    force: bool = False,
    echo: Callable[[str], Any] = print,
    train: TrainFn | None = None,
    stale_after: float = STALE_AFTER_S,
    only: list[str] | None = None,
    way_out: str = WAY_OUT,
) -> SweepSummary:
    """Train every run of the shard (matching `only`) that is not done yet; returns what happened to each.
    `way_out` ends the message about run directories of another config."""
    if train is None:
        from mile.engine.train import train_run as train
    runs = select_runs(sweep, shard, only)
    check_init_paths(sweep, runs)
    if not force:
        check_existing(sweep, runs, way_out)
    summary = SweepSummary(sweep, shard)
    of = f" (shard {shard[0]}/{shard[1]} of {len(sweep.runs)})" if shard[1] > 1 else ""
    of += f" matching {' or '.join(only)}" if only else ""
    echo(f"sweep {sweep.path}: {len(runs)} run(s){of} -> {sweep.output_dir}")
    for k, run in enumerate(runs, 1):
        tag = f"[{k}/{len(runs)}] {run.name}"
        starting = lambda tag=tag: echo(f"{tag}: training")  # noqa: E731
        outcome = run_one(sweep, run, force, train, stale_after, starting, way_out)
        echo(f"{tag}: {_outcome_text(outcome)}")
        record(sweep, outcome, shard)
        summary.outcomes.append(outcome)
        if outcome.state in ("trained", "failed"):
            _free_memory()  # the run's model and data, before the next one measures its peak memory
    echo(summary.text())
    return summary


def run_one(
    sweep: Sweep,
    run: SweepRun,
    force: bool,
    train: TrainFn,
    stale_after: float = STALE_AFTER_S,
    starting: Callable[[], Any] = lambda: None,
    way_out: str = WAY_OUT,
) -> Outcome:
    rundir = RunDir(sweep.run_dir(run))
    if rundir.is_done() and not force:  # no lock needed to skip; check_existing refused other configs
        return Outcome(run, "skipped")
    lock = RunLock(sweep.output_dir / LOCKS / f"{run.hash}.lock", stale_after)
    if not lock.acquire():
        return Outcome(run, "locked", f"locked by {describe_holder(read_lock(lock.path))}")
    try:
        try:  # decided again under the lock: another sweep may have finished it (or written it) meanwhile
            prepared = prepare_run(rundir, run.config, restart=force, way_out=way_out)
        except RunConflict as exc:
            return Outcome(run, "failed", str(exc))
        if prepared.action == "done":
            return Outcome(run, "skipped")
        starting()
        return _train(rundir, run, train)
    finally:
        lock.release()


def _train(rundir: RunDir, run: SweepRun, train: TrainFn) -> Outcome:
    start = time.perf_counter()
    try:
        rundir.create(run.config)  # config.yaml even when building the model fails
        train(run.config, rundir, resume=True)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        _mark_failed(rundir, error)
        return Outcome(run, "failed", error, time.perf_counter() - start)
    return Outcome(run, "trained", None, time.perf_counter() - start)


def _mark_failed(rundir: RunDir, error: str) -> None:
    try:
        rundir.path.mkdir(parents=True, exist_ok=True)
        if rundir.status().get("state") != "failed":
            rundir.set_status("failed", error=error)
        rundir.log(f"sweep: the run failed:\n{traceback.format_exc()}")
    except OSError:  # the failure may be the folder itself; the sweep record still has it
        pass


def record(sweep: Sweep, outcome: Outcome, shard: tuple[int, int]) -> None:
    """One JSON line per outcome in <output>/sweep.jsonl (a single O_APPEND write per line)."""
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run": outcome.run.name,
        "index": outcome.run.index,
        "state": outcome.state,
        "error": outcome.error,
        "wall_s": round(outcome.wall_s, 3),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "shard": f"{shard[0]}/{shard[1]}",
    }
    sweep.output_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep.output_dir / RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def _outcome_text(o: Outcome) -> str:
    texts = {
        "trained": f"done in {o.wall_s:.1f} s",
        "skipped": "skipped (already done)",
        "locked": f"skipped ({o.error})",
    }
    return texts.get(o.state, f"FAILED: {o.error}")


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
