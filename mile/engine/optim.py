"""Optimizer and learning-rate schedule over the trainable parameters only."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mile.config import TrainSection
from mile.tuning.errors import PlanError


def param_groups(model: nn.Module, cfg: TrainSection, adapters: set[str], fresh: set[str]) -> list[dict]:
    """AdamW groups: no weight decay on 1-D parameters (biases, norms, scales) nor on the ViT's position and
    class tokens (as timm). Learning rates by role: parameters a PEFT plan added (`lr_adapters`), parameters the
    checkpoint did not provide and that start random, e.g. a composed model's cross-attention (`lr_new`), and
    pretrained ones (`lr`). Frozen parameters are left out, so the optimizer holds no state for them."""
    rates = {"adapter": cfg.lr_adapters or cfg.lr, "new": cfg.lr_new or cfg.lr, "base": cfg.lr}
    depth = len(getattr(getattr(model, "vision", None), "blocks", ()))
    groups: dict[tuple[str, bool, int], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.dim() > 1 and not name.endswith(("pos_embed", "cls_token"))
        base_name = name.replace(".base_layer.", ".")  # peft wraps a targeted Linear as `<name>.base_layer`
        role = "adapter" if name in adapters else "new" if base_name in fresh else "base"
        below = vision_layers_below_top(name, depth) if cfg.layer_decay is not None else 0
        groups.setdefault((role, decay, below), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": rates[role] * (cfg.layer_decay**below if below else 1.0),
            "role": role,
        }
        for (role, decay, below), params in sorted(groups.items())
    ]


def vision_layers_below_top(name: str, depth: int) -> int:
    """Layer-wise learning-rate decay (BEiT, DINOv2 fine-tuning): how many layers a vision parameter sits below
    the top. Block i of `depth` is depth - i, the patch and position embeddings and class token depth + 1; the
    final norm, and everything outside the vision tower, 0 (its rate is not decayed)."""
    parts = name.split(".")
    if parts[0] != "vision":
        return 0
    if len(parts) > 2 and parts[1] == "blocks" and parts[2].isdigit():
        return depth - int(parts[2])
    if parts[1] in ("patch_embed", "pos_embed", "cls_token"):
        return depth + 1
    return 0


def make_optimizer(
    model: nn.Module, cfg: TrainSection, adapters: set[str], fresh: set[str]
) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg, adapters, fresh)
    if not groups:
        raise PlanError(
            "the tuning plan leaves no trainable parameters: nothing to train (plan.* all frozen?)"
        )
    # The fused kernel (CPU and CUDA) is one pass over each tensor: on a 2-core CPU it ran a 35 M-parameter step
    # in 0.05 s where the default per-tensor loop took 3.8 s.
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSection, total_steps: int) -> LambdaLR:
    """Linear warmup over warmup_ratio of the steps, then cosine / linear decay to 0, or constant."""
    warmup = int(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant" or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / (total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0 - progress

    return LambdaLR(optimizer, factor)
