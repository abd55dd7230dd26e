"""Find run directories under a folder and read what each one holds (config, status, params, stats, metrics).

A run directory is a folder holding config.yaml and env.json or status.json (what RunDir writes); the search
does not descend into run directories (their checkpoints and weights).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mile.config import Config, ConfigError
from mile.engine.rundir import RunDir

MARKERS = ("env.json", "status.json")


@dataclass
class RunRecord:
    path: Path
    state: str  # done / running / failed / new / invalid
    error: str | None = None
    config: Config | None = None
    params: dict[str, Any] | None = None  # params.json
    stats: dict[str, Any] = field(default_factory=dict)  # train_stats.json ({} before training ends)
    log: list[dict[str, Any]] = field(default_factory=list)  # train_log.jsonl

    def metrics(self, split: str) -> dict[str, Any] | None:
        file = self.path / "eval" / split / "metrics.json"
        return _json(file) if file.is_file() else None

    def probe(self, split: str) -> dict[str, Any] | None:
        """`mile probe`'s eval/<split>/probe.json, if the run was probed."""
        file = self.path / "eval" / split / "probe.json"
        return _json(file) if file.is_file() else None

    @property
    def first_split(self) -> str | None:
        splits = self.config.data.eval_splits if self.config else []
        return splits[0] if splits else None


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under `root` (itself included), sorted by path."""
    found = []
    for here, dirs, files in os.walk(root):
        if "config.yaml" in files and any(m in files for m in MARKERS):
            found.append(Path(here))
            dirs[:] = []  # a run's own subfolders hold no runs
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def load_run(path: Path) -> RunRecord:
    run = RunDir(path)
    status = run.status()
    state, error = status.get("state", "new"), status.get("error")
    try:
        config = run.config()
    except (ConfigError, ValueError) as exc:
        return RunRecord(
            path, "invalid", f"config.yaml does not validate: {str(exc).splitlines()[-1].strip()}"
        )
    record = RunRecord(path, state, error, config)
    if (path / "params.json").is_file():
        record.params = _json(path / "params.json")
    if (path / "train_stats.json").is_file():
        record.stats = _json(path / "train_stats.json") or {}
    record.log = read_jsonl(path / "train_log.jsonl")
    return record


def collect(root: str | Path) -> tuple[list[RunRecord], list[RunRecord]]:
    """(done runs, all others: failed / running / unfinished / invalid), each sorted by path."""
    records = [load_run(p) for p in find_run_dirs(root)]
    done = [r for r in records if r.state == "done"]
    return done, [r for r in records if r.state != "done"]


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file (a line cut short by a kill is left out)."""
    if not file.is_file():
        return []
    out = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def _json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
