"""`mile sweep`: argument handling and printing around load_sweep / run_sweep / count_runs."""

from __future__ import annotations

from pathlib import Path

import typer

from mile.sweep.dryrun import count_runs, format_counts
from mile.sweep.runner import parse_shard, run_sweep, select_runs
from mile.sweep.spec import load_sweep

FORCE_WAY_OUT = "Use another output_dir, or --force to retrain from scratch."


def sweep_command(
    path: Path,
    force: bool,
    shard: str | None,
    dry_run: bool,
    output_dir: Path | None,
    only: list[str] | None = None,
) -> int:
    """Run (or list) a sweep; the exit code is 1 when any run failed, else 0."""
    parts = parse_shard(shard, "--shard")
    sweep = load_sweep(path, output_dir)
    runs = select_runs(sweep, parts, only, "--only")
    if dry_run:
        typer.echo(format_counts(sweep, count_runs(sweep, runs), parts))
        return 0
    summary = run_sweep(sweep, shard=parts, force=force, echo=typer.echo, only=only, way_out=FORCE_WAY_OUT)
    return 1 if summary.failed else 0
