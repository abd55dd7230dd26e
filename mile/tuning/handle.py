"""Applying a plan to a model, and the handle that knows what was applied.

apply_plan freezes the whole model, then per tower: `full` makes every parameter of the tower trainable, `frozen`
leaves it, a method injects itself (its parameters trainable, the tower's own frozen); finally the parameters the
`extra_trainable` patterns name become trainable too. The handle then merges, disables, saves, loads, unloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from mile.model.attention import Attention
from mile.tuning.accounting import count_parameters
from mile.tuning.adapters import ATTR as ADAPTER_ATTR
from mile.tuning.base import TOWERS, Applied
from mile.tuning.errors import PlanError
from mile.tuning.plan import MethodSpec, PlanConfig, as_plan
from mile.tuning.prefix import ENCODER
from mile.tuning.targets import resolve, select_parameters


class TuningHandle:
    """A plan applied to a model: what each tower got, and the operations on it."""

    def __init__(self, model: nn.Module, plan: PlanConfig, applied: dict[str, Applied], extra: list[str]):
        self.model = model
        self.plan = plan
        self.applied = applied  # tower -> the method applied there
        self.extra = extra  # full names of the parameters extra_trainable made trainable

    # -- inspection ---------------------------------------------------------------------------------------------
    def trainable_report(self) -> dict[str, Any]:
        """Trainable / total parameters per tower and overall (see count_parameters)."""
        return count_parameters(self.model)

    def adapter_parameter_names(self) -> list[str]:
        """Parameters the plan added (peft adapters, prefixes, bottleneck adapters), not the model's own."""
        return [n for a in self.applied.values() for n in a.added_parameters()]

    def targets(self) -> dict[str, list[str]]:
        """Tower -> full names of the modules its method hit."""
        return {t: a.modules for t, a in self.applied.items()}

    @property
    def restores_base(self) -> bool:
        """Whether `disable()` gives back the base model's function: false when base weights are trained in place
        (full towers, partial treatments, extra_trainable)."""
        in_place = any(self.plan.tower(t) == "full" for t in TOWERS) or bool(self.extra)
        return not in_place and all(a.removable for a in self.applied.values())

    # -- switching ------------------------------------------------------------------------------------------------
    def disable(self) -> None:
        """Switch off every added method (peft adapters, prefixes, bottleneck adapters); see `restores_base`."""
        for a in self.applied.values():
            a.set_enabled(False)

    def enable(self) -> None:
        for a in self.applied.values():
            a.set_enabled(True)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        self.disable()
        try:
            yield
        finally:
            self.enable()

    def merge(self) -> list[str]:
        """Fold mergeable methods (the LoRA family, IA3, ...) into the base weights; returns the towers merged.
        Towers whose method cannot merge (prefixes, bottleneck adapters) keep running it unmerged."""
        merged = []
        for tower, a in self.applied.items():
            if not a.mergeable or a.merged:
                continue
            try:
                a.merge()
            except (NotImplementedError, ValueError, RuntimeError, TypeError):
                a.unmerge()  # peft merges layer by layer: undo the layers that did merge
                continue
            merged.append(tower)
        return merged

    def unmerge(self) -> None:
        for a in self.applied.values():
            if a.merged:
                a.unmerge()

    # -- training hooks -------------------------------------------------------------------------------------------
    def on_step(self, step: int) -> None:
        """Call after backward and before zero_grad each optimizer step (AdaLoRA's rank budget; else a no-op)."""
        for a in self.applied.values():
            a.on_step(step)

    def regularization_loss(self) -> torch.Tensor | None:
        """Extra loss terms methods ask for (AdaLoRA's orthogonality penalty), summed; None when there are none."""
        terms = [t for a in self.applied.values() if (t := a.regularization_loss()) is not None]
        return torch.stack(terms).sum() if terms else None

    def training_state(self) -> dict[str, Any]:
        """Per tower, what its method needs besides parameters to resume training exactly (see Applied)."""
        return {tower: state for tower, a in self.applied.items() if (state := a.training_state())}

    def load_training_state(self, state: dict[str, Any]) -> None:
        for tower, a in self.applied.items():
            a.load_training_state(state.get(tower, {}))

    # -- removal ------------------------------------------------------------------------------------------------
    def unload(self, merge: bool = False) -> nn.Module:
        """Remove every method, restoring the model's own modules (with `merge`, mergeable effects are kept in the
        weights); all parameters are left trainable, as a freshly built model's."""
        for a in self.applied.values():
            a.unload(merge=merge and a.mergeable)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.applied = {}
        return self.model


def apply_plan(model: nn.Module, plan: PlanConfig | dict | str) -> TuningHandle:
    """Apply a plan (a PlanConfig, a config dict or a notation string) to a model in place."""
    plan = as_plan(plan)
    busy = already_tuned(model)
    if busy:
        raise PlanError(f"the model already carries tuning methods ({busy[:3]}); unload them first")
    extra = select_parameters(model, plan.extra_trainable, "extra_trainable")
    params = dict(model.named_parameters())
    # held by identity, since injection renames parameters (q.weight becomes q.base_layer.weight)
    extra_params = [params[n] for n in extra]
    flags = [(p, p.requires_grad) for p in params.values()]
    for p in model.parameters():
        p.requires_grad_(False)
    applied: dict[str, Applied] = {}
    try:
        for tower in TOWERS:
            treatment = plan.tower(tower)
            if treatment == "full":
                for p in model.get_submodule(tower).parameters():
                    p.requires_grad_(True)
            elif isinstance(treatment, MethodSpec):
                call = resolve(model, treatment.call(tower), treatment.info)  # the only resolution
                applied[tower] = treatment.info.apply(model, call)
    except Exception:
        for a in applied.values():  # leave the model as it came when a later tower fails
            a.unload()
        for p, flag in flags:
            p.requires_grad_(flag)
        raise
    for p in extra_params:
        p.requires_grad_(True)
    return TuningHandle(model, plan, applied, extra)


def already_tuned(model: nn.Module) -> list[str]:
    """Names of modules that show a tuning method is already applied."""
    return [name for name, module in model.named_modules() if _carries_method(module)]


def _carries_method(module: nn.Module) -> bool:
    if isinstance(module, BaseTunerLayer) or hasattr(module, "peft_config") or hasattr(module, ENCODER):
        return True
    if isinstance(module, Attention) and module.prefix is not None:
        return True
    return isinstance(getattr(module, ADAPTER_ATTR, None), nn.Module)


def plan_targets(model: nn.Module, plan: PlanConfig | dict | str) -> dict[str, Any]:
    """What a plan would hit, without touching the model: per tower its treatment and the full names of the
    modules its method targets (IA3 also lists its feed-forward modules); plus the extra trainable parameters."""
    plan = as_plan(plan)
    out: dict[str, Any] = {}
    for tower in TOWERS:
        treatment = plan.tower(tower)
        if not isinstance(treatment, MethodSpec):
            out[tower] = {"treatment": treatment, "modules": []}
            continue
        call = resolve(model, treatment.call(tower), treatment.info)
        out[tower] = {"treatment": treatment.method, "modules": list(call.modules)}
        if call.options.get("feedforward"):
            out[tower]["feedforward"] = list(call.feedforward)
    out["extra_trainable"] = select_parameters(model, plan.extra_trainable, "extra_trainable")
    return out
