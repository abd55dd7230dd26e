"""Shared pieces of the tuning tests: a tiny model whose every weight matters, a batch, a few training steps."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mile.model.config import size_config
from mile.model.mile import MileModel

TOWERS = ("vision", "text_encoder", "text_decoder")


def tiny_model(seed: int = 0) -> MileModel:
    """The `tiny` size, with LayerNorms and biases moved off their identity / zero init so that treatments
    touching them (LN-tuning, BitFit) have something to show."""
    torch.manual_seed(seed)
    model = MileModel(size_config("tiny"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def make_batch(seed: int = 1, b: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    question = torch.randint(1000, 30000, (b, 7), generator=g)
    question[:, 0] = 30523  # [ENC]
    question_mask = torch.ones_like(question)
    question_mask[1, 5:] = 0
    answer = torch.randint(1000, 30000, (b, 5), generator=g)
    answer[:, 0] = 30522  # [DEC]
    answer_mask = torch.ones_like(answer)
    answer_mask[0, 3:] = 0
    pixels = torch.randn(b, 3, 32, 32, generator=g)
    return dict(
        question_ids=question,
        question_mask=question_mask,
        answer_ids=answer,
        answer_mask=answer_mask,
        pixels=pixels,
    )


@torch.no_grad()
def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    was = model.training
    model.eval()
    out = model(**batch).logits
    model.train(was)
    return out


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_steps(model: nn.Module, batch: dict, steps: int = 4, lr: float = 1e-2) -> set[str]:
    """A few Adam steps; returns the trainable parameters that had no gradient after the first backward."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.Adam(params.values(), lr=lr)
    model.train()
    no_grad: set[str] = set()
    for step in range(steps):
        opt.zero_grad()
        model(**batch).loss.backward()
        if step == 0:
            no_grad = {n for n, p in params.items() if p.grad is None}
        opt.step()
    model.eval()
    return no_grad


def only(tower: str, treatment: object) -> dict:
    """A plan with `treatment` on one tower and the others frozen."""
    plan: dict = {t: "frozen" for t in TOWERS}
    plan[tower] = treatment
    return plan


def fresh(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
