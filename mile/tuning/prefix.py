"""Prefix tuning: learned keys and values prepended in every targeted attention, reparameterised by an MLP.

Li & Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", ACL 2021. https://arxiv.org/abs/2101.00190

Shaped as peft's PrefixEncoder with `prefix_projection=True`: P virtual tokens, Embedding(P, D) -> Linear(D, H) ->
Tanh -> Linear(H, A*2*D), giving a key and a value prefix (P, D) for each of the A targeted attentions (by default
every self-attention of the tower; add `*.cross_attn` to reach cross-attention too). At blip-base (D 768, 12
layers, P 10, H 768) that is 14,772,480 parameters per tower. Unlike peft's `past_key_values` route this reaches
the JTM encoder, cross-attention and the ViT, because it plugs into our `Attention.prefix` hook.

The shared MLP runs once per tower forward, not once per layer: a forward pre-hook on the tower computes all A
prefixes before the first layer runs, and every attention reads its slice. Computing them outside the layers also
keeps gradient checkpointing exact: a recomputed layer reads the same prefix tensor as the original forward did.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mile.model.attention import Attention
from mile.tuning.base import Applied, MethodCall
from mile.tuning.errors import PlanError

ENCODER = "prefix_encoder"  # attribute on the tower, so the parameters belong to the tower they serve


class PrefixOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(10, ge=1)  # P
    encoder_hidden_size: int = Field(768, ge=1)  # H, the reparameterising MLP's hidden width


class PrefixProvider(nn.Module):
    """Computes the (A, 2, P, D) keys/values of all targeted attentions, once per forward of its tower."""

    def __init__(self) -> None:
        super().__init__()
        self.active = True
        # this forward's prefixes, kept until the next forward so that recomputed (checkpointed) layers see them
        self._cache: Tensor | None = None

    def __getstate__(self) -> dict:
        # a tensor inside an autograd graph can be neither deep-copied nor pickled; the next forward recomputes it
        return {**self.__dict__, "_cache": None}

    def compute(self) -> Tensor:
        raise NotImplementedError

    def refresh(self) -> None:
        self._cache = self.compute() if self.active else None

    def prefixes(self) -> Tensor:
        # outside a tower forward (an attention called on its own) there is nothing to share: compute afresh
        return self._cache if self._cache is not None else self.compute()


class PrefixEncoder(PrefixProvider):
    def __init__(self, attentions: int, width: int, tokens: int, hidden: int):
        super().__init__()
        self.shape = (tokens, attentions, 2, width)
        self.embedding = nn.Embedding(tokens, width)
        self.transform = nn.Sequential(
            nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, attentions * 2 * width)
        )

    def compute(self) -> Tensor:
        kv = self.transform(self.embedding.weight)  # (P, A*2*D)
        return kv.view(self.shape).permute(1, 2, 0, 3)  # (A, 2, P, D)


class PrefixSlot:
    """The `Attention.prefix` callable of the i-th targeted attention: its (k, v), each (P, D)."""

    def __init__(self, provider: PrefixProvider, index: int):
        self.provider = provider
        self.index = index

    def __call__(self) -> tuple[Tensor, Tensor]:
        kv = self.provider.prefixes()[self.index]
        return kv[0], kv[1]


def _refresh(tower: nn.Module, args: tuple) -> None:
    getattr(tower, ENCODER).refresh()  # looked up on the tower, so a deep copy of the model still works


class PrefixApplied(Applied):
    def __init__(self, call: MethodCall, tower: nn.Module):
        super().__init__(call)
        self.tower_module = tower
        self.provider: PrefixProvider = getattr(tower, ENCODER)
        # the i-th targeted attention reads the i-th (k, v) of the tower's one provider
        self.slots = [(a, PrefixSlot(self.provider, i)) for i, a in enumerate(call.modules.values())]
        self.hook = tower.register_forward_pre_hook(_refresh)
        self.set_enabled(True)

    def added_parameters(self) -> list[str]:
        return [f"{self.tower}.{ENCODER}.{n}" for n, _ in self.provider.named_parameters()]

    def set_enabled(self, enabled: bool) -> None:
        for attention, slot in self.slots:
            attention.prefix = slot if enabled else None
        self.provider.active = enabled
        self.provider._cache = None
        self.enabled = enabled

    def unload(self, merge: bool = False) -> None:
        self.set_enabled(False)
        self.hook.remove()
        delattr(self.tower_module, ENCODER)


def attach_prefix(
    model: nn.Module, call: MethodCall, make: Callable[[int, int], PrefixProvider]
) -> PrefixApplied:
    """Give every targeted attention of the tower a slot of one provider built by `make(attentions, width)`."""
    tower = model.get_submodule(call.tower)
    attns = call.modules
    wrong = [m for m, a in attns.items() if not isinstance(a, Attention)]
    if wrong:
        raise PlanError(
            f"{call.tower}.targets: {call.method} needs attention modules; these are not: {wrong[:4]}"
        )
    busy = [m for m, a in attns.items() if a.prefix is not None]
    if busy:
        raise PlanError(f"{call.tower}: {busy[:4]} already have a key/value prefix")
    widths = {a.k.out_features for a in attns.values()}
    if len(widths) != 1:
        raise PlanError(f"{call.tower}.targets: the targeted attentions differ in width {sorted(widths)}")
    if hasattr(tower, ENCODER):
        raise PlanError(f"{call.tower}: the tower already has a {ENCODER}")
    ref = next(tower.parameters())
    with torch.device(ref.device):  # build in place (also on the meta device), not on the CPU first
        provider = make(len(attns), widths.pop())
    tower.add_module(ENCODER, provider.to(dtype=ref.dtype))
    return PrefixApplied(call, tower)


def apply_prefix(model: nn.Module, call: MethodCall) -> PrefixApplied:
    opts = PrefixOptions(**call.options)
    make = functools.partial(PrefixEncoder, tokens=opts.num_virtual_tokens, hidden=opts.encoder_hidden_size)
    return attach_prefix(model, call, make)
