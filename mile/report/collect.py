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

import yaml

from mile.config import Config, ConfigError
from mile.engine.rundir import RunDir

from .compare import inference_split

MARKERS = ("env.json", "status.json")
# What the table reads from a metrics.json (mile.engine.metrics.score writes all of it): {"acc", "n"} of each
METRIC_GROUPS = (
    ("global",),
    *(("rules", rule, group) for rule in ("yesno", "answer_type") for group in ("open", "closed")),
)


class CorruptFile(ValueError):
    """A run file that is there but unusable (not JSON / YAML, or not what mile writes); the message says which
    file, relative to the run directory, and why: `corrupt eval/test/metrics.json (not JSON: ...)`."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"corrupt {name} ({reason})")
        self.name, self.reason = name, reason


@dataclass
class RunRecord:
    path: Path
    state: str  # done / running / failed / new / invalid
    error: str | None = None
    config: Config | None = None
    params: dict[str, Any] | None = None  # params.json
    stats: dict[str, Any] = field(default_factory=dict)  # train_stats.json ({} before training ends)
    log: list[dict[str, Any]] = field(default_factory=list)  # train_log.jsonl

    def metrics(self, split: str, inference: str | None = None) -> dict[str, Any] | None:
        """The metrics.json of the run's `inference` (generate / rank; None: its own eval.inference) answers on
        `split`; None when there is none, CorruptFile when it is not JSON or lacks the accuracies and counts the
        table reads."""
        name = f"{self.answers(split, inference)}/metrics.json"
        metrics = read_object(self.path, name)
        problem = metrics_problem(metrics) if metrics is not None else None
        if problem:
            raise CorruptFile(name, problem)
        return metrics

    def answers(self, split: str, inference: str | None = None) -> str:
        """Where the run keeps its `inference` answers on `split`, relative to it: eval/<split> for its own
        eval.inference, eval/<mode>/<split> for a mode `mile eval --inference` added (RunDir.inference_tag)."""
        return f"eval/{inference_split(self.path, split, inference)}"

    def probe(self, split: str) -> dict[str, Any] | None:
        """`mile probe`'s eval/<split>/probe.json, if the run was probed (CorruptFile if it is not JSON)."""
        return read_object(self.path, f"eval/{split}/probe.json")

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
    """What a run directory holds; a run whose files cannot be read is state `invalid`, the reason its error
    (a report lists it as left out instead of failing on it)."""
    try:
        status = read_object(path, "status.json") or {"state": "new"}
        if not isinstance(status.get("state", "new"), str):
            raise CorruptFile("status.json", f"state is {status['state']!r}, not a name")
        config = _read_config(RunDir(path))
        params = read_object(path, "params.json")
        stats = read_object(path, "train_stats.json") or {}
    except (CorruptFile, ConfigError) as exc:
        return RunRecord(path, "invalid", str(exc))
    error = None if status.get("error") is None else str(status["error"])
    log = read_jsonl(path / "train_log.jsonl")
    return RunRecord(path, status.get("state", "new"), error, config, params, stats, log)


def _read_config(run: RunDir) -> Config:
    try:
        return run.config()
    except ConfigError as exc:  # readable YAML, but not a valid config: the last line names the first problem
        raise ConfigError(f"config.yaml does not validate: {str(exc).splitlines()[-1].strip()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CorruptFile("config.yaml", f"not YAML: {getattr(exc, 'problem', None) or exc}{where}") from None
    except (ValueError, OSError) as exc:  # not UTF-8, unreadable, or safe_yaml's size limits
        raise CorruptFile("config.yaml", _short(exc)) from None


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
    # bytes that are not UTF-8 spoil their own line only (it is then not JSON and is left out)
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def read_object(run_path: Path, name: str) -> dict[str, Any] | None:
    """The JSON object in file `name` of a run directory; None when there is no such file, CorruptFile when it
    cannot be read, is not JSON or holds something other than an object (all mile writes there)."""
    file = run_path / name
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorruptFile(name, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8
        raise CorruptFile(name, _short(exc)) from None
    if not isinstance(data, dict):
        raise CorruptFile(name, f"holds a JSON {type(data).__name__}, not an object")
    return data


def metrics_problem(metrics: dict[str, Any]) -> str | None:
    """Why a metrics.json cannot be tabulated (a missing group, an accuracy that is not a fraction); None: fine."""
    for path in METRIC_GROUPS:
        node = dig(metrics, path)
        where = ".".join(path)
        if not isinstance(node, dict):
            return f"lacks {where}"
        acc, n = node.get("acc"), node.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return f"{where}.n is {n!r}, not a count"
        # None: an empty group; a number outside [0, 1] is not a fraction (a percentage, or garbage)
        fraction = isinstance(acc, (int, float)) and not isinstance(acc, bool) and 0 <= acc <= 1
        if acc is not None and not fraction:
            return f"{where}.acc is {acc!r}, not a fraction in [0, 1]"
    return None


def relative(path: Path, root: Path) -> str:
    """`path` as written under `root` (`.` for root itself), or whole when it is not under it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def dig(node: Any, path: tuple[str, ...]) -> Any:
    """node[path[0]][path[1]]...; None where a step is missing or not a mapping."""
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
