"""Sweeps: a base config and a grid of plans / settings, expanded into named runs and trained one by one, N at once
on this machine, or as a SLURM job array.

    from mile.sweep import load_sweep, run_sweep

    sweep = load_sweep("configs/sweeps/mile-small/lora.yaml")   # validated, named runs
    summary = run_sweep(sweep, shard=(1, 2))                     # trains what is not done yet

Modules: spec (the sweep file, expansion), naming (run names, config hash), lock (one lock file per run),
runner (skip / resume / record failures / shards), launch (local processes and SLURM arrays through submitit),
status (every run's state, with its SLURM job), dryrun (trainable parameters without training); the
`mile sweep` command is mile.cli.sweep.
"""

from mile.sweep.lock import RunLock
from mile.sweep.runner import Outcome, SweepSummary, parse_shard, run_sweep, select_runs, select_shard
from mile.sweep.spec import Sweep, SweepError, SweepRun, load_sweep

__all__ = [
    "Outcome",
    "RunLock",
    "Sweep",
    "SweepError",
    "SweepRun",
    "SweepSummary",
    "load_sweep",
    "parse_shard",
    "run_sweep",
    "select_runs",
    "select_shard",
]
