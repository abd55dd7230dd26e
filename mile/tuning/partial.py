"""Partial tuning: train a subset of a tower's own weights in place, adding nothing.

Chen et al. ("LayerNorm as a catalyst"), arXiv 2404.16385. https://arxiv.org/abs/2404.16385
  (LayerNorm-only, attention-only, FFN-only)
Ben Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked Language-models",
ACL 2022. https://arxiv.org/abs/2106.10199 (bias-only)

- `layernorm`: every parameter of the targeted LayerNorms (default `type:LayerNorm`, all of the tower's);
- `bitfit`: the `bias` parameters owned by the targeted modules (default `*`: every bias of the tower, LayerNorm
  and LM-head biases included);
- `attention`: every parameter of the targeted attentions (q, k, v, o of self- and cross-attention);
- `ffn`: every parameter of the targeted feed-forward blocks (fc1, fc2);
- `blocks`: every parameter of the tower's transformer blocks, kept to some with `layers` (e.g. `{method:
  blocks, layers: [-4, -3, -2, -1]}`: the last four, the usual "fine-tune the top of the ViT").

These change base weights, so `disable` cannot bring the base model back and there is nothing to merge.
Compare peft's `ln_tuning`, which trains a copy of each LayerNorm and can be disabled.
"""

from __future__ import annotations

from torch import nn

from mile.tuning.base import Applied, MethodCall

# name -> (notation token, default targets (per tower kind where they differ), which of the targets' parameters:
# MethodInfo.trains)
PARTIAL = {
    "layernorm": ("LN", ("type:LayerNorm",), "all"),
    "bitfit": ("BitFit", ("*",), "bias"),
    "attention": ("Attn", ("type:Attention",), "all"),
    "ffn": ("FFN", ("type:Mlp",), "all"),
    "blocks": ("Blocks", {"vision": ("type:VisionBlock",), "text": ("type:TextLayer",)}, "all"),
}


class PartialApplied(Applied):
    removable = False

    def __init__(self, call: MethodCall):
        super().__init__(call)
        self.params = list(call.parameters)  # full names of the base parameters it made trainable


def apply_partial(model: nn.Module, call: MethodCall) -> PartialApplied:
    for name in call.parameters:
        model.get_parameter(name).requires_grad_(True)
    return PartialApplied(call)
