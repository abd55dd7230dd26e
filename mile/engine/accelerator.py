"""The accelerator a run uses (device, precision, DDP), and the two collectives the training loop needs so that
several processes compute what one would."""

from __future__ import annotations

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState

from mile.config import Config
from mile.engine.precision import ACCELERATE_NAMES, Precision, resolve_precision


def run_device(cfg: Config) -> str:
    return "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"


def run_precision(cfg: Config) -> Precision:
    """The precision this run trains in on this machine (fp16 on a CPU is a config error)."""
    return resolve_precision(cfg.train.mixed_precision, run_device(cfg))


def make_accelerator(cfg: Config, precision: Precision) -> Accelerator:
    wanted = ACCELERATE_NAMES[precision.used]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != wanted:
        # accelerate keeps one process-wide state and refuses a second precision in it; runs of a sweep (or a
        # run, then `mile eval` of another) in one process may differ. The distributed part is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        cpu=precision.device == "cpu",
        mixed_precision=wanted,
        gradient_accumulation_steps=cfg.train.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        step_scheduler_with_optimizer=False,
        # Every plan's forward reaches every trainable parameter in every step (tests/engine/
        # test_distributed.py runs each method family), so DDP need not search the autograd graph for unused
        # ones each step; a method that broke this would stop with DDP's "Expected to have finished reduction".
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )


def global_token_mean(out, accelerator: Accelerator) -> torch.Tensor:
    """The loss each process backpropagates so that DDP's gradient average equals the gradient of the token
    mean over the *global* batch: local token sum * world size / global token count. (Averaging per-process
    means would weigh a process's tokens by how many answer tokens it happened to get.)"""
    if accelerator.num_processes == 1:
        return out.loss
    tokens = out.n_tokens.detach().float()
    total = accelerator.reduce(tokens.clone(), reduction="sum")
    return out.loss * tokens * accelerator.num_processes / total


def all_finite(loss: torch.Tensor, accelerator: Accelerator) -> bool:
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if accelerator.num_processes > 1:  # every process must take the same branch, or DDP hangs
        finite = accelerator.reduce(finite, reduction="min")
    return bool(finite.item() > 0)
