"""What every tuning method shares: the description of one method call and what it leaves in a tower."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

TOWERS = ("vision", "text_encoder", "text_decoder")
# Default targets differ between the ViT and the two BERT-style text towers, not between the text towers.
TOWER_KIND = {"vision": "vision", "text_encoder": "text", "text_decoder": "text"}
COMMON_KEYS = ("method", "targets", "exclude", "layers")


@dataclass(frozen=True)
class MethodCall:
    """One method applied to one tower, with its options resolved (defaults filled, aliases folded) and, once
    `targets.resolve` has run, what its patterns hit: methods read these rather than matching patterns again."""

    method: str
    tower: str
    targets: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    layers: tuple[int, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    # what the patterns hit, filled in by targets.resolve: full name -> module, in module order
    modules: Mapping[str, nn.Module] = field(default_factory=dict, repr=False)
    feedforward: tuple[str, ...] = ()  # those of `modules` the `feedforward` option names (IA3)
    parameters: tuple[str, ...] = ()  # full names of the base parameters a partial method trains


class Applied:
    """What a method left in one tower; the handle drives it. Subclasses override what they support."""

    mergeable = False  # can fold itself into the base weights exactly (and unfold again)
    removable = True  # disable() restores the base model's function

    def __init__(self, call: MethodCall):
        self.method = call.method
        self.tower = call.tower
        self.modules = list(call.modules)  # full names of the modules it hit
        self.enabled = True
        self.merged = False

    def added_parameters(self) -> list[str]:
        """Full names of the parameters this method added to the model."""
        return []

    def saved_parameters(self) -> set[str]:
        """Full names of the parameters that `save` writes itself (the rest go to the tower's own file)."""
        return set()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled

    def merge(self) -> None:
        raise NotImplementedError(f"{self.method} cannot be merged into the weights")

    def unmerge(self) -> None:
        raise NotImplementedError(f"{self.method} cannot be merged into the weights")

    def save(self, directory: Path) -> None:
        """Write method-specific files (peft's layout) into the tower's directory."""

    def load(self, directory: Path) -> None:
        """Read what `save` wrote."""

    def unload(self, merge: bool = False) -> None:
        """Remove the method from the model, leaving the base modules as they were before it was applied (with
        `merge`, a mergeable method's effect is first folded into the base weights)."""

    def on_step(self, step: int) -> None:
        """Called after backward and before zero_grad each optimizer step (AdaLoRA reallocates its ranks)."""

    def regularization_loss(self) -> Tensor | None:
        """An extra loss term the method asks for (AdaLoRA's orthogonality penalty), or None."""
        return None

    def training_state(self) -> dict[str, Any]:
        """State a method keeps outside its parameters that training depends on (AdaLoRA's importance scores and
        rank pattern), for checkpoints: tensors and plain values only."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` gave."""


@dataclass(frozen=True)
class MethodInfo:
    """A method a plan can name, with the defaults a bare name (or a notation token) gets."""

    name: str  # the plan's `method:` value, e.g. "lora"
    kind: Literal["peft", "native", "partial"]
    abbrev: str  # notation token, e.g. "LoRA"
    targets: Mapping[str, tuple[str, ...]]  # tower kind -> default target patterns
    options: frozenset[str]  # valid option names beyond the common keys
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the paper's settings where it has them
    tower_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # tower kind -> more
    aliases: Mapping[str, str] = field(default_factory=dict)  # short name -> option name
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # validates option values
    apply: Callable[[nn.Module, MethodCall], Applied] | None = None
    # partial methods: which parameters of their targets they train in place (all, or each target's own bias)
    trains: Literal["all", "bias"] | None = None
