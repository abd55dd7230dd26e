"""`mile sweep`: argument handling and printing around load_sweep, run_sweep / run_local / submit_slurm (where the
runs train), run_states (--status) and count_runs (--dry-run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mile.sweep.dryrun import count_runs, format_counts
from mile.sweep.launch import launcher_config, run_local, submit_slurm
from mile.sweep.runner import parse_shard, run_sweep, select_runs
from mile.sweep.spec import load_sweep
from mile.sweep.status import format_states, run_states, wait_for

FORCE_WAY_OUT = "Use another output_dir, or --force to retrain from scratch."


def sweep_command(
    path: Path,
    force: bool,
    shard: str | None,
    dry_run: bool,
    output_dir: Path | None,
    only: list[str] | None = None,
    launcher_options: dict[str, Any] | None = None,
    view: str | None = None,
) -> int:
    """Run, submit, list or show a sweep; the exit code is 1 when a run failed (or, waiting, did not finish)."""
    parts = parse_shard(shard, "--shard")
    sweep = load_sweep(path, output_dir)
    runs = select_runs(sweep, parts, only, "--only")
    launcher = launcher_config(sweep, launcher_options or {})
    if dry_run:
        typer.echo(format_counts(sweep, count_runs(sweep, runs), parts))
        return 0
    if view == "status":
        typer.echo(format_states(run_states(sweep, runs)))
        return 0
    if view == "wait":
        states = wait_for(sweep, runs, typer.echo)
        return 0 if all(s.state == "done" for s in states) else 1
    if launcher.kind == "slurm":
        if submit_slurm(sweep, runs, launcher, force, typer.echo, FORCE_WAY_OUT):
            typer.echo(f"follow it with: mile sweep {path} --status [--wait]")
        return 0
    if launcher.kind == "local":
        return 1 if run_local(sweep, runs, launcher, force, typer.echo, FORCE_WAY_OUT).failed else 0
    summary = run_sweep(sweep, shard=parts, force=force, echo=typer.echo, only=only, way_out=FORCE_WAY_OUT)
    return 1 if summary.failed else 0
