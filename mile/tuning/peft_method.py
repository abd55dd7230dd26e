"""Layer methods from `peft` (LoRA, DoRA, rsLoRA, IA3, LoHa, LoKr, AdaLoRA, VeRA, OFT, BOFT, LN-tuning and every
other injectable peft tuner), applied to one tower at a time.

peft's own tuner class is instantiated on the tower sub-module, so peft does all the work (layer creation, init,
merge, disable, state dicts) while module names stay ours (`text_decoder.layers.0.self_attn.q.lora_A.default`).
The modules our patterns picked (mile.tuning.targets.resolve) reach peft as one exact-name regex. The tuner object
is kept by the handle, outside the model, which also keeps tuner-level shared state (VeRA's projections) reachable.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from mile.tuning.base import Applied, MethodCall
from mile.tuning.errors import PlanError
from mile.tuning.targets import exact_regex

ADAPTER = "default"  # peft's default adapter name, so a saved tower loads with PeftModel.from_pretrained too
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
# Config fields the plan sets in its own way: targets/exclude/layers are our full-name patterns; modules_to_save
# would rename modules (use the plan's extra_trainable); the rest is bookkeeping peft fills itself.
RESERVED = frozenset({
    "peft_type", "task_type", "auto_mapping", "base_model_name_or_path", "revision", "peft_version",
    "inference_mode", "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "feedforward_modules", "modules_to_save", "target_parameters",
})  # fmt: skip
NOT_INJECTABLE = frozenset({"XLORA", "SHADOW"})  # need peft's own model wrapper


@functools.cache
def peft_methods() -> dict[str, tuple[type, type]]:
    """Injectable peft tuners by plan name (the lower-case peft type): name -> (config class, tuner class)."""
    out = {}
    for ptype, tuner in PEFT_TYPE_TO_TUNER_MAPPING.items():
        if isinstance(tuner, type) and issubclass(tuner, BaseTuner) and ptype.value not in NOT_INJECTABLE:
            out[ptype.value.lower()] = (PEFT_TYPE_TO_CONFIG_MAPPING[ptype], tuner)
    return out


def option_names(method: str) -> frozenset[str]:
    """The keyword arguments a plan may pass through to the method's peft config."""
    names = {f.name for f in dataclasses.fields(peft_methods()[method][0])} - RESERVED
    return frozenset(names | ({"feedforward"} if method == "ia3" else set()))


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build the peft config once with a placeholder target so peft's own checks run at plan-load time."""
    config_cls = peft_methods()[method][0]
    kwargs = {k: v for k, v in options.items() if k != "feedforward"}
    if method == "ia3":
        kwargs["feedforward_modules"] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config_cls(target_modules=["placeholder"], **kwargs)
    except (TypeError, ValueError, ImportError) as exc:
        raise ValueError(f"peft rejects these {method} options {kwargs}: {exc}") from None
    return options


class PeftApplied(Applied):
    mergeable = True

    def __init__(self, call: MethodCall, tower: nn.Module, tuner: BaseTuner):
        super().__init__(call)
        self.tower_module = tower
        self.tuner = tuner

    @property
    def config(self) -> Any:
        return self.tuner.peft_config[ADAPTER]

    def added_parameters(self) -> list[str]:
        # peft puts the adapter name into the name of every parameter it adds (lora_A.default.weight, ...)
        return [
            f"{self.tower}.{n}"
            for n, _ in self.tower_module.named_parameters()
            if f".{ADAPTER}." in n or n.endswith(f".{ADAPTER}")
        ]

    def saved_parameters(self) -> set[str]:
        return set(self.added_parameters())

    def set_enabled(self, enabled: bool) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Careful, disabling adapter layers with bias")
            self.tuner.enable_adapter_layers() if enabled else self.tuner.disable_adapter_layers()
        self.enabled = enabled

    def merge(self) -> None:
        self.tuner.merge_adapter()
        self.merged = True

    def unmerge(self) -> None:
        self.tuner.unmerge_adapter()
        self.merged = False

    def save(self, directory: Path) -> None:
        state = get_peft_model_state_dict(_PeftModelView(self.tuner), adapter_name=ADAPTER)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()},
            str(directory / WEIGHTS_FILE),
            metadata={"format": "pt"},
        )
        self.config.save_pretrained(str(directory))

    def load(self, directory: Path) -> None:
        file = directory / WEIGHTS_FILE
        if not file.is_file():
            raise PlanError(f"{self.tower}: {file} is missing; cannot load the {self.method} adapter")
        state = load_file(str(file))
        result = set_peft_model_state_dict(_PeftModelView(self.tuner), state, adapter_name=ADAPTER)
        # peft leaves constants out of its files (AdaLoRA's ranknum), so only trainable adapter weights must be there
        trainable = {
            f"base_model.model.{n}" for n, p in self.tower_module.named_parameters() if p.requires_grad
        }
        missing = [k for k in result.missing_keys if f".{ADAPTER}" in k and k in trainable]
        if result.unexpected_keys or missing:
            raise PlanError(
                f"{file} does not fit the {self.method} adapter of {self.tower}: unexpected keys "
                f"{sorted(result.unexpected_keys)[:5]}, missing keys {sorted(missing)[:5]}"
            )

    def unload(self, merge: bool = False) -> None:
        """Take the adapter out; with `merge` its effect is folded into the base weights for good."""
        if self.merged and not merge:
            self.unmerge()
        self.tuner.merge_and_unload() if merge else self.tuner.unload()


class AdaLoraApplied(PeftApplied):
    """A tuner with a rank budget (AdaLoRA): reallocated each step, with an orthogonality penalty."""

    def on_step(self, step: int) -> None:
        self.tuner.update_and_allocate(step)

    def regularization_loss(self) -> torch.Tensor:
        """The orthogonality penalty, already weighted.

        peft adds it inside AdaLoraModel.forward to `outputs.loss`; our towers return tensors, so that forward
        is run on a stand-in whose model "returns" a zero loss and exposes the tower's parameters."""
        zero = next(self.tower_module.parameters()).new_zeros(())
        outputs = SimpleNamespace(loss=zero)
        model = SimpleNamespace(forward=lambda: outputs, named_parameters=self.tower_module.named_parameters)
        probe = SimpleNamespace(
            model=model,
            peft_config=self.tuner.peft_config,
            trainable_adapter_name=self.tuner.trainable_adapter_name,
        )
        return type(self.tuner).forward(probe).loss

    # peft prunes a saved AdaLoRA adapter to its rank pattern and resizes the layers it loads into, which would
    # leave the live model and its optimizer on different shapes. The budget step already zeroes the pruned
    # ranks in place, so the full-rank tensors (saved with no rank pattern) compute the same function and load
    # anywhere, PeftModel.from_pretrained included; the pattern itself travels in the training state.
    def save(self, directory: Path) -> None:
        with self._without_rank_pattern():
            super().save(directory)

    def load(self, directory: Path) -> None:
        with self._without_rank_pattern():
            super().load(directory)

    @contextmanager
    def _without_rank_pattern(self) -> Iterator[None]:
        pattern, self.config.rank_pattern = self.config.rank_pattern, None
        try:
            yield
        finally:
            self.config.rank_pattern = pattern

    def training_state(self) -> dict[str, Any]:
        allocator = self.tuner.rankallocator
        scores = {kind: dict(getattr(allocator, kind)) for kind in _ALLOCATOR_SCORES}
        return {"scores": scores, "rank_pattern": self.config.rank_pattern}

    def load_training_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        allocator = self.tuner.rankallocator
        for kind in _ALLOCATOR_SCORES:
            setattr(allocator, kind, dict(state["scores"][kind]))
        self.config.rank_pattern = state["rank_pattern"]


_ALLOCATOR_SCORES = ("ipt", "exp_avg_ipt", "exp_avg_unc")  # AdaLoRA's smoothed importance per parameter


class _PeftModelView(nn.Module):
    """Looks like a PeftModel to peft's state-dict functions: keys get PeftModel's `base_model.model.` prefix
    (so a saved tower also loads with PeftModel.from_pretrained) and tuner-level state is included."""

    def __init__(self, tuner: BaseTuner):
        super().__init__()
        self.base_model = tuner
        self.peft_config = tuner.peft_config


def apply_peft(model: nn.Module, call: MethodCall) -> PeftApplied:
    tower = model.get_submodule(call.tower)
    options = dict(call.options)
    config_cls, tuner_cls = peft_methods()[call.method]
    if options.pop("feedforward", None) is not None:  # IA3's, scaled on their input rather than their output
        options["feedforward_modules"] = exact_regex(call.feedforward, call.tower) if call.feedforward else []
    config = config_cls(target_modules=exact_regex(call.modules, call.tower), **options)
    try:
        with warnings.catch_warnings():
            # peft's size probe warns on every LayerNorm, which is exactly what ln_tuning targets
            warnings.filterwarnings("ignore", message="Unsupported layer type")
            tuner = tuner_cls(tower, config, ADAPTER)
    except (TypeError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise PlanError(
            f"{call.tower}: peft {call.method} cannot be applied to {list(call.modules)[:4]}...: {exc}"
        ) from exc
    budgeted = hasattr(tuner, "update_and_allocate")
    return (AdaLoraApplied if budgeted else PeftApplied)(call, tower, tuner)
