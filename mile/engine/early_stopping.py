"""Early stopping on an evaluation split's metric, keeping the weights of the best evaluation.

Decisions are computed from the epoch evaluations on disk (eval/epoch-N/<split>/metrics.json), never from state
held in memory, so a run killed at any moment and resumed decides exactly as an unbroken one. The best weights
live in `best/` (the `weights/` format), with `best.json` saying which evaluation they are; `best.json` is
written after the folder, so a kill between the two only makes the next decision save the same weights again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mile.atomic import atomic_write_json
from mile.config import Config
from mile.engine.checkpoint import load_weights, save_weights
from mile.engine.rundir import RunDir
from mile.tuning import TuningHandle

BEST_DIR, BEST_RECORD = "best", "best.json"


@dataclass
class Decision:
    best_epoch: int
    best_value: float
    evaluations: int  # epoch evaluations compared so far
    since_best: int  # evaluations after the best one
    stop: bool


class EarlyStopping:
    def __init__(self, cfg: Config, run: RunDir):
        section = cfg.train.early_stopping
        assert section is not None
        self.section, self.run = section, run
        self.split = section.split or cfg.data.eval_splits[0]

    def metric(self, epoch: int) -> float | None:
        """The configured metric of epoch `epoch`'s evaluation; None when that evaluation is not on disk."""
        path = self.run.path / "eval" / f"epoch-{epoch}" / self.split / "metrics.json"
        if not path.is_file():
            return None
        metrics = json.loads(path.read_text())
        if self.section.metric == "global":
            return metrics["global"]["acc"]
        rule, part = self.section.metric.split(".")
        return metrics["rules"][rule][part]["acc"]

    def decide(self, epochs_done: int) -> Decision | None:
        """Best evaluation and stop / go after `epochs_done` epochs; None before the first evaluation. The
        earliest of equal values is the best; a later one must beat it by more than min_delta."""
        best: tuple[int, float] | None = None
        count = since = 0
        for epoch in range(1, epochs_done + 1):
            value = self.metric(epoch)
            if value is None:
                continue
            count += 1
            if best is None or value > best[1] + self.section.min_delta:
                best, since = (epoch, value), 0
            else:
                since += 1
        if best is None:
            return None
        return Decision(best[0], best[1], count, since, since >= self.section.patience)

    def keep_best(self, decision: Decision, handle: TuningHandle, epochs_done: int) -> None:
        """Save the current weights as the best when the evaluation after `epochs_done` epochs is the best and
        `best/` does not hold it yet (main process only)."""
        if decision.best_epoch != epochs_done or self.best_epoch() == epochs_done:
            return
        save_weights(handle, self.run.path / BEST_DIR)
        record = {"split": self.split, "metric": self.section.metric, **asdict(decision)}
        atomic_write_json(self.run.path / BEST_RECORD, record)

    def best_epoch(self) -> int | None:
        path = self.run.path / BEST_RECORD
        return json.loads(path.read_text())["best_epoch"] if path.is_file() else None

    def restore_best(self, handle: TuningHandle) -> None:
        load_weights(handle, self.run.path / BEST_DIR)

    def describe(self, decision: Decision, epochs_done: int) -> str:
        head = f"early stopping: {self.split} {self.section.metric} after epoch {epochs_done}"
        best = f"best {decision.best_value:.4f} at epoch {decision.best_epoch}"
        if decision.stop:
            return f"{head}: {best}, {decision.since_best} evaluation(s) without improvement: stopping"
        return f"{head}: {best} ({decision.since_best} of {self.section.patience} without improvement)"
