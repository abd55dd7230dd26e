"""What happens to a run directory before training: the one rule that `mile train` and sweeps share.

- restart: the directory's old contents are deleted, then the run trains from scratch;
- otherwise a directory holding another config is refused (resuming would mix two configs' checkpoints and
  results), a `done` run is left as it is, and anything else (new, interrupted, failed) trains with resume.

    prepared = prepare_run(run, cfg, restart=False)
    if prepared.action == "train":
        train_run(cfg, run)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mile.config import Config, ConfigError
from mile.engine.rundir import RunDir
from mile.tuning import format_plan_notation

WAY_OUT = "Train into another run directory, or restart the run to delete it and train from scratch."


class RunConflict(ConfigError):
    """The run directory holds a run of another config; `way_out` is the caller's words for what to do."""

    def __init__(self, path: Path, why: str, way_out: str = WAY_OUT):
        self.path, self.why = path, why
        super().__init__(f"run directory {path} holds another run: {why}. {way_out}")


@dataclass(frozen=True)
class Prepared:
    action: Literal["done", "train"]  # done: nothing to train; train: from scratch or resumed
    deleted: bool = False  # a restart deleted the directory's previous contents


def default_run_dir(cfg: Config) -> Path:
    """run.output_dir/run.name, the name defaulting to `<plan notation>-<dataset>-s<seed>`."""
    name = cfg.run.name or f"{format_plan_notation(cfg.plan)}-{cfg.data.dataset}-s{cfg.train.seed}"
    return Path(cfg.run.output_dir) / name


def prepare_run(run: RunDir | str | Path, cfg: Config, restart: bool, way_out: str = WAY_OUT) -> Prepared:
    """Decide what training `run` needs and, on restart, empty it; raises RunConflict when the directory holds
    another config and restart is False. Without restart nothing on disk changes."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if restart:
        return Prepared("train", deleted=_delete_contents(run.path))
    why = run.config_mismatch(cfg)
    if why:
        raise RunConflict(run.path, why, way_out)
    return Prepared("done" if run.is_done() else "train")


def _delete_contents(path: Path) -> bool:
    if not path.is_dir() or not any(path.iterdir()):
        return False
    shutil.rmtree(path)
    return True
