"""Bottleneck adapters: a small residual MLP on the output of a sub-layer, zero-initialised so that it starts as
the identity.

Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019. https://arxiv.org/abs/1902.00751
  (after the attention and after the feed-forward block of every layer; here self- and cross-attention both)
Pfeiffer et al., "AdapterFusion: Non-Destructive Task Composition for Transfer Learning", EACL 2021.
  https://arxiv.org/abs/2005.00247 (after the feed-forward block only)

h -> h + up(act(down(h))), down: Linear(D, D / reduction_factor), up: Linear(D / reduction_factor, D) with zero
weight and bias, applied to the targeted module's output (before dropout and the residual add of the layer), via a
forward hook, so module names stay ours: `text_decoder.layers.0.mlp.adapter.down.weight`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mile.model.attention import Attention
from mile.model.layers import Mlp
from mile.tuning.base import Applied, MethodCall
from mile.tuning.errors import PlanError

ATTR = "adapter"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}


class AdapterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction_factor: int = Field(16, ge=1)
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = "relu"


class Bottleneck(nn.Module):
    def __init__(self, width: int, hidden: int, non_linearity: str):
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)  # identity at initialisation: training starts from the base model
        nn.init.zeros_(self.up.bias)
        self.enabled = True

    def forward(self, h: Tensor) -> Tensor:
        if not self.enabled:
            return h
        return h + self.up(self.act(self.down(h)))


def _adapter_hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    # looks the adapter up on the module (rather than closing over it) so a deep copy of the model still works
    return getattr(module, ATTR)(output)


def _output_width(module: nn.Module) -> int | None:
    if isinstance(module, Attention):
        return module.o.out_features
    if isinstance(module, Mlp):
        return module.fc2.out_features
    return getattr(module, "out_features", None)


class AdapterApplied(Applied):
    def __init__(self, call: MethodCall):
        super().__init__(call)
        self.hooked = dict(call.modules)  # full name -> module carrying an adapter
        self.hooks = [m.register_forward_hook(_adapter_hook) for m in self.hooked.values()]

    def added_parameters(self) -> list[str]:
        return [
            f"{name}.{ATTR}.{n}"
            for name, m in self.hooked.items()
            for n, _ in getattr(m, ATTR).named_parameters()
        ]

    def set_enabled(self, enabled: bool) -> None:
        for m in self.hooked.values():
            getattr(m, ATTR).enabled = enabled
        self.enabled = enabled

    def unload(self, merge: bool = False) -> None:
        for hook in self.hooks:
            hook.remove()
        for m in self.hooked.values():
            delattr(m, ATTR)


def apply_adapters(model: nn.Module, call: MethodCall) -> AdapterApplied:
    opts = AdapterOptions(**call.options)
    for full, module in call.modules.items():  # every target checked first, so that a failure adds nothing
        if _output_width(module) is None or hasattr(module, ATTR):
            raise PlanError(
                f"{call.tower}.targets: {call.method} adapters go after attention, Mlp or Linear "
                f"modules without an adapter; {full} is a {type(module).__name__}"
            )
    ref = next(model.get_submodule(call.tower).parameters())
    for module in call.modules.values():
        width = _output_width(module)
        with torch.device(ref.device):
            adapter = Bottleneck(width, max(1, width // opts.reduction_factor), opts.non_linearity)
        module.add_module(ATTR, adapter.to(dtype=ref.dtype))
    return AdapterApplied(call)
