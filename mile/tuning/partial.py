"""Partial tuning: train a subset of a tower's own weights in place, adding nothing.

Chen et al. ("LayerNorm as a catalyst"), arXiv 2404.16385. https://arxiv.org/abs/2404.16385
  (LayerNorm-only, attention-only, FFN-only)
Ben Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked Language-models",
ACL 2022. https://arxiv.org/abs/2106.10199 (bias-only)

- `layernorm`: every parameter of the targeted LayerNorms (default `type:LayerNorm`, all of the tower's);
- `bitfit`: the `bias` parameters owned by the targeted modules (default `*`: every bias of the tower, LayerNorm
  and LM-head biases included);
- `attention`: every parameter of the targeted attentions (q, k, v, o of self- and cross-attention);
- `ffn`: every parameter of the targeted feed-forward blocks (fc1, fc2).

These change base weights, so `disable` cannot bring the base model back and there is nothing to merge.
Compare peft's `ln_tuning`, which trains a copy of each LayerNorm and can be disabled.
"""

from __future__ import annotations

from torch import nn

from mile.tuning.base import Applied, MethodCall
from mile.tuning.targets import select_modules

PARTIAL = {  # name -> (notation token, default targets, bias parameters only)
    "layernorm": ("LN", ("type:LayerNorm",), False),
    "bitfit": ("BitFit", ("*",), True),
    "attention": ("Attn", ("type:Attention",), False),
    "ffn": ("FFN", ("type:Mlp",), False),
}


class PartialApplied(Applied):
    removable = False

    def __init__(self, call: MethodCall, modules: list[str], params: list[str]):
        super().__init__(call.method, call.tower, modules)
        self.params = params  # full names of the base parameters it made trainable

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled  # nothing was added, so there is nothing to switch


def apply_partial(model: nn.Module, call: MethodCall) -> PartialApplied:
    tower = model.get_submodule(call.tower)
    modules = select_modules(tower, call.tower, call.targets, call.exclude, call.layers, call.key)
    bias_only = PARTIAL[call.method][2]
    params: list[str] = []
    for full in modules:
        module = tower.get_submodule(full[len(call.tower) + 1 :])  # "" is the tower itself
        # bitfit takes only the module's own biases, so a broad pattern does not pull in its children twice
        owned = module.named_parameters(recurse=not bias_only)
        for name, p in owned:
            if bias_only and name != "bias":
                continue
            p.requires_grad_(True)
            params.append(f"{full}.{name}")
    return PartialApplied(call, modules, params)
