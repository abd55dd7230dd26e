"""Training on accelerate: one CPU, one GPU, or `accelerate launch` over several processes (DDP).

The loop resumes from the run directory's last checkpoint (weights, optimizer, scheduler, RNG, data position),
so an interrupted run finishes with the same result as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mile.config import Config
from mile.engine.accelerator import all_finite, global_token_mean, make_accelerator, run_precision
from mile.engine.batches import Collate, VQADataset, model_inputs
from mile.engine.build import Session, build_session
from mile.engine.checkpoint import (
    NonFiniteWeights,
    Progress,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from mile.engine.datasets import load_run_data, prompt_chooser
from mile.engine.early_stopping import EarlyStopping
from mile.engine.evaluate import evaluate_splits
from mile.engine.features import FeatureCache, feature_cache
from mile.engine.measure import Meter
from mile.engine.memory import tune_memory
from mile.engine.optim import make_optimizer, make_scheduler
from mile.engine.rundir import RunDir
from mile.errors import MileError


class NonFiniteLoss(MileError, RuntimeError):
    pass


def train_run(cfg: Config, run: RunDir, resume: bool = True) -> dict[str, Any]:
    """Train, evaluate every configured split, and leave everything in `run`. Returns the final metrics."""
    precision = run_precision(cfg)
    accelerator = make_accelerator(cfg, precision)
    memory = tune_memory()  # before the first bf16 GEMM
    set_seed(cfg.train.seed)
    session = build_session(cfg)
    try:
        if accelerator.is_main_process:
            run.create(cfg, precision=asdict(precision), memory=memory)
            run.set_status("running")
            run.write_json("params.json", session.tuning.trainable_report())
            run.log(session.load_report.summary())
            run.log(precision.describe())
            run.log(f"malloc: {memory['malloc']}; oneDNN primitive cache: {memory['onednn_primitive_cache']}")
        splits = load_run_data(cfg, session.tokenizer, run, accelerator.is_main_process)
        cache = feature_cache(cfg, session, precision)
        usage = {}
        if cfg.train.epochs:
            trainer = Trainer(cfg, session, run, accelerator, cache, splits["train"].samples)
            usage = trainer.fit({k: v for k, v in splits.items() if k != "train"}, resume)
        elif accelerator.is_main_process:  # nothing to train, but a done run always has its weights
            save_weights(session.tuning, run.weights)
        usage["precision"] = precision.used
        if accelerator.is_main_process:  # what this task must keep beside the base model: the plan's weights/
            usage["stored_mb"] = round(
                sum(f.stat().st_size for f in run.weights.rglob("*") if f.is_file()) / 2**20, 3
            )
        metrics = evaluate_splits(cfg, session, splits, run, accelerator, cache=cache, merge=True)
        if accelerator.is_main_process:
            run.write_json("train_stats.json", usage)
            run.set_status("done")
    except BaseException as exc:
        if accelerator.is_main_process:
            run.record_failure(exc)
        raise
    accelerator.wait_for_everyone()
    return metrics


class Trainer:
    """The optimisation loop of one run; state lives in `progress` and in the checkpoints. Everything it needs
    is built here; `fit` runs the epochs (resuming first), `step` is one batch of it."""

    def __init__(
        self,
        cfg: Config,
        session: Session,
        run: RunDir,
        accelerator: Accelerator,
        cache: FeatureCache | None,
        samples: list,
    ):
        self.cfg, self.session, self.run, self.accelerator, self.cache = cfg, session, run, accelerator, cache
        t = self.t = cfg.train
        optimizer = make_optimizer(session.model, t, session.adapter_names(), session.fresh_names())
        transform = None if cache else session.transform(train=True)
        loader = DataLoader(
            VQADataset(samples, transform, prompt_chooser(cfg, train=True), seed=t.seed),
            batch_size=t.batch_size,
            shuffle=True,
            collate_fn=Collate(session.tokenizer),
            num_workers=cfg.data.num_workers,
            # Its own generator: creating an iterator draws a seed, which must not move the global RNG that
            # dropout uses, or a resumed run (which creates one more iterator) would drift from an unbroken one.
            generator=torch.Generator().manual_seed(t.seed),
        )
        self.model, self.optimizer, self.loader = accelerator.prepare(session.model, optimizer, loader)
        # train.compile: the training forward through torch.compile (dynamic shapes: question lengths and the
        # last batch vary); checkpoints, evaluation and the parameter names keep using the plain module.
        self.forward = torch.compile(self.model, dynamic=True) if t.compile else self.model
        self.scheduler = make_scheduler(
            self.optimizer, t, math.ceil(len(self.loader) / t.grad_accum) * t.epochs
        )
        self.progress = Progress()
        self.stopping = EarlyStopping(cfg, run) if t.early_stopping else None
        self.meter = Meter(accelerator.device)
        self.writer = None  # TensorBoard, opened by fit on the main process
        self.bar = None  # the epoch's progress bar
        self._before = (0.0, 0)  # wall time and samples of the earlier processes of a resumed run
        self._tick, self._seen = time.perf_counter(), 0  # throughput since the last log line

    def fit(self, evals: dict, resume: bool) -> dict[str, Any]:
        """Train the remaining epochs (evaluating `evals` every train.eval_every epochs), save the trained
        weights, and return the training's usage figures."""
        t, acc = self.t, self.accelerator
        if resume:
            self._resume()
        if acc.is_main_process:
            # A process that died after logging steps its checkpoint does not hold: those steps come again.
            # TensorBoard is told the same (purge_step).
            dropped = self.run.trim_jsonl("train_log.jsonl", self.progress.step)
            if dropped:
                self.run.log(f"{dropped} log records after step {self.progress.step} dropped")
            from torch.utils.tensorboard import SummaryWriter  # slow to import: only where it writes

            self.writer = SummaryWriter(log_dir=str(self.run / "tb"), purge_step=self.progress.step + 1)
        self._before = (self.progress.wall_s, self.progress.samples)
        with self.meter:
            # an epoch's evaluation (and stopping decision) the last process did not finish
            stop = self.progress.batches_done == 0 and self._epoch_evaluation(evals, self.progress.epoch)
            for epoch in range(self.progress.epoch, t.epochs):
                if stop:
                    break
                self.progress.epoch = epoch
                self._epoch()
                self.progress.epoch, self.progress.batches_done = epoch + 1, 0
                self._checkpoint()
                stop = self._epoch_evaluation(evals, epoch + 1)
        if self.writer is not None:
            self.writer.close()
        if self.stopping is not None:
            self._restore_best()
        if acc.is_main_process:
            with self._saving():
                save_weights(self.session.tuning, self.run.weights)
        return self._usage()

    def _resume(self) -> None:
        last = latest_checkpoint(self.run.checkpoints)
        if last is None:
            return
        p = self.progress = load_checkpoint(last, self.session.tuning, self.optimizer, self.scheduler)
        self.run.log(f"resumed from {last} at epoch {p.epoch + 1}, batch {p.batches_done}, step {p.step}")

    def _epoch_evaluation(self, evals: dict, epochs_done: int) -> bool:
        """Evaluate after `epochs_done` epochs when train.eval_every asks for it and it is not on disk yet (a
        resumed run redoes one its last process did not finish; the weights are those of the checkpoint).
        With early stopping the last epoch is evaluated too, and the return value says whether to stop."""
        every, name = self.t.eval_every, f"epoch-{epochs_done}"
        if not every or not epochs_done:
            return False
        if epochs_done >= self.t.epochs:  # the final evaluation covers it, unless early stopping compares it
            if self.stopping is None:
                return False
        elif epochs_done % every:
            return False
        if not all((self.run.path / "eval" / name / split / "metrics.json").is_file() for split in evals):
            evaluate_splits(self.cfg, self.session, evals, self.run, self.accelerator, name, self.cache)
        return self._early_stopping(epochs_done)

    def _early_stopping(self, epochs_done: int) -> bool:
        """Keep the weights if this evaluation is the best; the main process decides, every process follows."""
        if self.stopping is None:
            return False
        stop = [False]
        if self.accelerator.is_main_process:
            decision = self.stopping.decide(epochs_done)
            if decision is not None:
                with self._saving():
                    self.stopping.keep_best(decision, self.session.tuning, epochs_done)
                self.run.log(self.stopping.describe(decision, epochs_done))
                stop = [decision.stop]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(stop)
        return stop[0]

    def _restore_best(self) -> None:
        """Leave the model with the best evaluation's weights (every process loads them)."""
        self.accelerator.wait_for_everyone()
        best = self.stopping.best_epoch()
        if best is not None and best != self.progress.epoch:
            self.stopping.restore_best(self.session.tuning)
            if self.accelerator.is_main_process:
                self.run.log(
                    f"early stopping: restored the weights of epoch {best} (trained {self.progress.epoch})"
                )

    def _checkpoint(self) -> None:
        p = self.progress
        p.wall_s, p.samples = self._before[0] + self.meter.elapsed(), self._before[1] + self.meter.samples
        if self.accelerator.is_main_process:
            with self._saving():
                tuning = self.session.tuning  # its model is the unwrapped one DDP shares parameters with
                save_checkpoint(self.run.checkpoints, tuning, self.optimizer, self.scheduler, self.progress)

    @contextmanager
    def _saving(self) -> Iterator[None]:
        """Say where training went wrong when the weights to save are not finite."""
        try:
            yield
        except NonFiniteWeights as exc:
            p = self.progress
            last = latest_checkpoint(self.run.checkpoints)
            raise NonFiniteWeights(
                f"training diverged by step {p.step} (epoch {p.epoch + 1}): {exc}. Last good checkpoint: "
                f"{last or 'none'}. Lower train.lr or keep train.max_grad_norm set."
            ) from None

    def _epoch(self) -> None:
        p, acc = self.progress, self.accelerator
        self.loader.set_epoch(p.epoch)
        self.loader.dataset.epoch = p.epoch
        batches = acc.skip_first_batches(self.loader, p.batches_done) if p.batches_done else self.loader
        self.model.train()
        self.bar = tqdm(
            batches,
            total=len(self.loader),
            initial=p.batches_done,
            desc=f"epoch {p.epoch + 1}/{self.t.epochs}",
            disable=not acc.is_local_main_process,
            unit="batch",
        )
        self._tick, self._seen = time.perf_counter(), 0
        for batch in self.bar:
            self.step(batch)

    def step(self, batch: dict) -> None:
        """One batch: forward under the run's autocast, backward, and (every grad_accum batches) an optimizer
        step, with logging and checkpoints as configured."""
        t, acc, p, tuning = self.t, self.accelerator, self.progress, self.session.tuning
        if self.cache is not None:
            batch.update(self.cache.inputs(batch["images"], acc.device))
        with acc.accumulate(self.model):
            loss = global_token_mean(self.forward(**model_inputs(batch)), acc)
            extra = tuning.regularization_loss()  # e.g. AdaLoRA's orthogonality term
            if extra is not None:
                loss = loss + extra
            if not all_finite(loss, acc):
                self._nonfinite(batch)
                p.batches_done += 1
                return
            acc.backward(loss)
            if acc.sync_gradients and t.max_grad_norm:
                acc.clip_grad_norm_([q for q in self.model.parameters() if q.requires_grad], t.max_grad_norm)
            self.optimizer.step()
            if acc.sync_gradients:
                tuning.on_step(p.step + 1)  # e.g. AdaLoRA's rank reallocation
            self.optimizer.zero_grad(set_to_none=True)
        p.batches_done += 1
        n = batch["index"].shape[0] * acc.num_processes
        self.meter.samples += n
        self._seen += n
        if acc.sync_gradients:
            self.scheduler.step()
            p.step += 1
            if p.step % t.log_every == 0 or p.batches_done == len(self.loader):
                self._log(acc.reduce(loss.detach(), reduction="mean").item())
            if t.checkpoint_every and p.step % t.checkpoint_every == 0:
                self._checkpoint()

    def _nonfinite(self, batch: dict) -> None:
        p = self.progress
        ids = batch["index"].tolist()
        where = f"step {p.step}, epoch {p.epoch + 1}, batch {p.batches_done} (sample indices {ids[:16]})"
        if self.t.on_nonfinite == "stop":
            last = latest_checkpoint(self.run.checkpoints)
            raise NonFiniteLoss(
                f"non-finite loss at {where}; last good checkpoint: {last or 'none yet'}. Lower train.lr, "
                "keep train.max_grad_norm set, or set train.on_nonfinite=skip to skip such batches."
            )
        self.optimizer.zero_grad(set_to_none=True)
        p.skipped_nonfinite += 1
        self.run.log(f"skipped a batch with non-finite loss at {where}")

    def _log(self, loss: float) -> None:
        p, lr = self.progress, self.scheduler.get_last_lr()[0]
        rate = self._seen / max(time.perf_counter() - self._tick, 1e-9)
        self._tick, self._seen = time.perf_counter(), 0
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
        if not self.accelerator.is_main_process:
            return
        record = {"step": p.step, "epoch": p.epoch + 1, "loss": loss, "lr": lr, "samples_per_s": rate}
        self.run.append_jsonl("train_log.jsonl", record)
        for key in ("loss", "lr", "samples_per_s"):
            if self.writer is not None:
                self.writer.add_scalar(f"train/{key}", record[key], p.step)

    def _usage(self) -> dict[str, Any]:
        usage = self.meter.usage()
        p = self.progress
        usage.update(steps=p.step, epochs=self.t.epochs, skipped_nonfinite=p.skipped_nonfinite)
        if self._before[0]:  # a resumed run: time and samples of all its processes; peak memory is this one's
            usage["wall_s"] = round(self._before[0] + usage["wall_s"], 3)
            usage["samples"] = self._before[1] + usage["samples"]
            usage["samples_per_s"] = round(usage["samples"] / usage["wall_s"], 3)
            usage["resumed"] = True
        usage["feature_cache"] = self.cache.stats() if self.cache else None
        if self.stopping is not None:
            decision = self.stopping.decide(p.epoch)
            usage["epochs"] = p.epoch  # trained; train.epochs was the most it could have been
            usage["early_stopping"] = {"split": self.stopping.split, "metric": self.stopping.section.metric,
                                       **(asdict(decision) if decision else {})}  # fmt: skip
        return usage
