"""Training on accelerate: one CPU, one GPU, or `accelerate launch` over several processes (DDP).

The loop resumes from the run directory's last checkpoint (weights, optimizer, scheduler, RNG, data position),
so an interrupted run finishes with the same result as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mile.config import Config
from mile.engine.batches import Collate, VQADataset, model_inputs
from mile.engine.build import Session, build_session, load_split
from mile.engine.checkpoint import (
    Progress,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_trainable,
)
from mile.engine.evaluate import format_metrics, predict, score_split, write_eval
from mile.engine.features import FeatureCache, cache_applies, default_cache_dir
from mile.engine.measure import Meter
from mile.engine.optim import make_optimizer, make_scheduler
from mile.engine.rundir import RunDir
from mile.model.generation import GenerationConfig

WEIGHTS_FILE = "trainable.safetensors"


class NonFiniteLoss(RuntimeError):
    pass


def make_accelerator(cfg: Config) -> Accelerator:
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    return Accelerator(
        cpu=not cuda,
        mixed_precision={"fp32": "no"}.get(cfg.train.mixed_precision, cfg.train.mixed_precision)
        if cuda
        else "no",
        gradient_accumulation_steps=cfg.train.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        step_scheduler_with_optimizer=False,
    )


def train_run(cfg: Config, run: RunDir, resume: bool = True) -> dict[str, Any]:
    """Train, evaluate every configured split, and leave everything in `run`. Returns the final metrics."""
    accelerator = make_accelerator(cfg)
    set_seed(cfg.train.seed)
    session = build_session(cfg)
    if accelerator.is_main_process:
        run.create(cfg)
        run.set_status("running")
        run.write_json("params.json", session.tuning.trainable_report())
        run.log(session.load_report.summary())
    try:
        splits = _load_data(cfg, run, accelerator)
        usage, cache = _fit(cfg, session, splits.get("train"), run, accelerator, resume, splits)
        metrics = evaluate_splits(cfg, session, splits, run, accelerator, cache=cache)
    except BaseException as exc:
        if accelerator.is_main_process:
            run.set_status("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if accelerator.is_main_process:
        run.write_json("train_stats.json", usage)
        run.set_status("done")
    accelerator.wait_for_everyone()
    return metrics


def _load_data(cfg: Config, run: RunDir, accelerator: Accelerator) -> dict:
    splits = {"train": load_split(cfg, cfg.data.train_split)} if cfg.train.epochs else {}
    for split in cfg.data.eval_splits:
        splits[split] = load_split(cfg, split)
    report = {name: result.bad.to_dict() for name, result in splits.items()}
    if accelerator.is_main_process:
        run.write_json("data_report.json", report)
        run.log("data: " + ", ".join(f"{k} {len(v)} samples" for k, v in splits.items()))
    return splits


def _fit(
    cfg: Config, session: Session, train_data, run: RunDir, accelerator: Accelerator, resume: bool, splits
) -> tuple:
    t = cfg.train
    if not t.epochs:
        return {"epochs": 0}, None
    model = session.model
    optimizer = make_optimizer(model, t, session.adapter_names())
    cache = feature_cache(cfg, session, accelerator)
    dataset = VQADataset(train_data.samples, None if cache else session.transform(train=True))
    loader = DataLoader(
        dataset,
        batch_size=t.batch_size,
        shuffle=True,
        collate_fn=Collate(session.tokenizer),
        num_workers=cfg.data.num_workers,
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / t.grad_accum)
    scheduler = make_scheduler(optimizer, t, steps_per_epoch * t.epochs)
    progress = Progress()
    last = latest_checkpoint(run.checkpoints) if resume else None
    if last is not None:
        progress = load_checkpoint(last, accelerator.unwrap_model(model), optimizer, scheduler)
        run.log(
            f"resumed from {last} at epoch {progress.epoch}, batch {progress.batches_done}, step {progress.step}"
        )
    writer = _tensorboard(run) if accelerator.is_main_process else None
    with Meter(accelerator.device) as meter:
        for epoch in range(progress.epoch, t.epochs):
            progress.epoch = epoch
            _epoch(cfg, model, loader, optimizer, scheduler, accelerator, progress, run, writer, meter, cache)
            progress.epoch, progress.batches_done = epoch + 1, 0
            if accelerator.is_main_process:
                save_checkpoint(
                    run.checkpoints, accelerator.unwrap_model(model), optimizer, scheduler, progress
                )
            if t.eval_every and (epoch + 1) % t.eval_every == 0 and epoch + 1 < t.epochs:
                evaluate_splits(
                    cfg,
                    session,
                    {k: v for k, v in splits.items() if k != "train"},
                    run,
                    accelerator,
                    f"epoch-{epoch + 1}",
                    cache,
                )
    if writer is not None:
        writer.close()
    if accelerator.is_main_process:
        run.weights.mkdir(parents=True, exist_ok=True)
        save_trainable(accelerator.unwrap_model(model), run.weights / WEIGHTS_FILE)
    usage = meter.usage().to_dict()
    usage.update(steps=progress.step, epochs=t.epochs, skipped_nonfinite=progress.skipped_nonfinite)
    usage["feature_cache"] = cache.stats() if cache else None
    return usage, cache


def feature_cache(cfg: Config, session: Session, accelerator: Accelerator) -> FeatureCache | None:
    """The feature cache when configured (or `auto`) and exact for this plan; None otherwise."""
    t = cfg.train
    if t.feature_cache == "none":
        return None
    if not cache_applies(session.model, cfg.data.augment):
        if t.feature_cache == "auto":
            return None
        raise ValueError(
            f"train.feature_cache={t.feature_cache} needs a frozen vision tower (plan.vision: frozen) and "
            "data.augment=false; use feature_cache=auto or none"
        )
    directory = None
    if t.feature_cache == "disk":
        directory = t.feature_cache_dir or default_cache_dir()
    return FeatureCache(
        session.model, session.transform(train=False), t.feature_cache_items, directory, accelerator.autocast
    )


def _epoch(
    cfg, model, loader, optimizer, scheduler, accelerator, progress: Progress, run, writer, meter, cache
) -> None:
    t = cfg.train
    loader.set_epoch(progress.epoch)
    loader.dataset.epoch = progress.epoch
    batches = (
        accelerator.skip_first_batches(loader, progress.batches_done) if progress.batches_done else loader
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    bar = tqdm(
        batches,
        total=len(loader),
        initial=progress.batches_done,
        desc=f"epoch {progress.epoch + 1}/{t.epochs}",
        disable=not accelerator.is_local_main_process,
        unit="batch",
    )
    tick, seen = time.perf_counter(), 0
    for batch in bar:
        if cache is not None:
            batch["image_states"] = cache.states(batch["images"], accelerator.device)
        with accelerator.accumulate(model):
            loss = model(**model_inputs(batch)).loss
            if not _all_finite(loss, accelerator):
                _nonfinite(cfg, run, progress, batch, optimizer)
                progress.batches_done += 1
                continue
            accelerator.backward(loss)
            if accelerator.sync_gradients and t.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, t.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        progress.batches_done += 1
        n = batch["index"].shape[0] * accelerator.num_processes
        meter.samples += n
        seen += n
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        progress.step += 1
        if progress.step % t.log_every == 0 or progress.batches_done == len(loader):
            rate = seen / max(time.perf_counter() - tick, 1e-9)
            _log_step(accelerator, run, writer, bar, progress, loss.item(), scheduler.get_last_lr()[0], rate)
            tick, seen = time.perf_counter(), 0
        if t.checkpoint_every and progress.step % t.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(run.checkpoints, accelerator.unwrap_model(model), optimizer, scheduler, progress)


def _all_finite(loss: torch.Tensor, accelerator: Accelerator) -> bool:
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if accelerator.num_processes > 1:  # every process must take the same branch, or DDP hangs
        finite = accelerator.reduce(finite, reduction="min")
    return bool(finite.item() > 0)


def _nonfinite(cfg: Config, run: RunDir, progress: Progress, batch: dict, optimizer) -> None:
    ids = batch["index"].tolist()
    last = latest_checkpoint(run.checkpoints)
    where = f"step {progress.step}, epoch {progress.epoch + 1}, batch {progress.batches_done} (sample indices {ids[:16]})"
    if cfg.train.on_nonfinite == "stop":
        raise NonFiniteLoss(
            f"non-finite loss at {where}; last good checkpoint: {last or 'none yet'}. "
            "Lower train.lr, enable gradient clipping, or set train.on_nonfinite=skip to skip such batches."
        )
    optimizer.zero_grad(set_to_none=True)
    progress.skipped_nonfinite += 1
    run.log(f"skipped a batch with non-finite loss at {where}")


def _log_step(
    accelerator, run: RunDir, writer, bar, progress: Progress, loss: float, lr: float, rate: float
) -> None:
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
    if not accelerator.is_main_process:
        return
    record = {
        "step": progress.step,
        "epoch": progress.epoch + 1,
        "loss": loss,
        "lr": lr,
        "samples_per_s": rate,
    }
    run.append_jsonl("train_log.jsonl", record)
    if writer is not None:
        writer.add_scalar("train/loss", loss, progress.step)
        writer.add_scalar("train/lr", lr, progress.step)
        writer.add_scalar("train/samples_per_s", rate, progress.step)


def _tensorboard(run: RunDir):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run / "tb"))


def evaluate_splits(
    cfg: Config,
    session: Session,
    splits: dict,
    run: RunDir,
    accelerator: Accelerator,
    tag: str = "",
    cache=None,
) -> dict:
    """Generate and score every evaluation split; files go to eval/<split>/ (or eval/<tag>/<split>/)."""
    generation = GenerationConfig(num_beams=cfg.eval.num_beams, max_new_tokens=cfg.eval.max_new_tokens)
    results = {}
    for split in cfg.data.eval_splits:
        data = splits[split]
        loader = DataLoader(
            VQADataset(data.samples, None if cache else session.transform(train=False)),
            batch_size=cfg.eval.batch_size,
            collate_fn=Collate(session.tokenizer),
            num_workers=cfg.data.num_workers,
        )
        loader = accelerator.prepare_data_loader(loader)
        answers = predict(
            session.model, session.tokenizer, loader, generation, accelerator, f"eval {split}", cache
        )
        if accelerator.is_main_process:
            metrics, rows = score_split(data.samples, answers, split)
            write_eval(run.eval_dir(f"{tag}/{split}" if tag else split), metrics, rows)
            run.log(format_metrics(metrics))
            results[split] = metrics
    return results
