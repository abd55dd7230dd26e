"""Reading weight files, renaming keys by rules, and loading the result into a model with a report."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from mile.errors import MileError
from mile.model.vision import resize_pos_embed

# A rule: regex over a source key -> a replacement template (str for one target, a function for several).
Rule = tuple[str, "str | Callable[[re.Match, Tensor], dict[str, Tensor]]"]


class CheckpointError(MileError, ValueError):
    """A checkpoint that cannot be loaded as asked; the message names the file and the key."""


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A flat state dict from .safetensors, or from a pickled .bin/.pth/.pt read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle holding more than tensors
        raise CheckpointError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # BLIP / MISS training checkpoints wrap the state dict
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a state dict of tensors")
    return state


def find_weights(directory: Path) -> Path:
    """The weights file of a transformers-layout directory (safetensors preferred)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    if list(directory.glob("*.safetensors.index.json")) or list(directory.glob("*.bin.index.json")):
        raise CheckpointError(f"{directory} holds a sharded checkpoint; sharded loading is not supported")
    raise CheckpointError(f"{directory} has no model.safetensors or pytorch_model.bin")


def rename(
    state: dict[str, Tensor], rules: list[Rule], ignore: Iterable[str] = ()
) -> tuple[dict, list, list]:
    """Apply the first matching rule to every key. Returns (renamed state, ignored keys, unmatched keys)."""
    out: dict[str, Tensor] = {}
    ignored, unmatched = [], []
    compiled = [(re.compile(pattern), target) for pattern, target in rules]
    ignore_res = [re.compile(p) for p in ignore]
    for key, value in state.items():
        if any(p.fullmatch(key) for p in ignore_res):
            ignored.append(key)
            continue
        for pattern, target in compiled:
            match = pattern.fullmatch(key)
            if match:
                out.update({match.expand(target): value} if isinstance(target, str) else target(match, value))
                break
        else:
            unmatched.append(key)
    return out, ignored, unmatched


def split_qkv(prefix: str) -> Callable[[re.Match, Tensor], dict[str, Tensor]]:
    """A rule target that splits a fused qkv weight or bias (3D, ...) into q, k and v."""

    def split(match: re.Match, value: Tensor) -> dict[str, Tensor]:
        root, kind = match.expand(prefix), match.group("kind")
        q, k, v = value.chunk(3, dim=0)
        return {f"{root}.q.{kind}": q, f"{root}.k.{kind}": k, f"{root}.v.{kind}": v}

    return split


@dataclass
class LoadReport:
    source: str
    loaded: int = 0
    initialised: list[str] = field(default_factory=list)  # new parameters, expected to start fresh
    ignored: list[str] = field(default_factory=list)  # checkpoint keys we deliberately do not use
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys no rule recognises
    adapted: list[str] = field(default_factory=list)  # e.g. interpolated position embeddings

    def summary(self) -> str:
        lines = [f"loaded {self.loaded} tensors from {self.source}"]
        for title, keys in (
            ("newly initialised", self.initialised),
            ("adapted", self.adapted),
            ("ignored checkpoint keys", self.ignored),
            ("unexpected checkpoint keys", self.unexpected),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"{title}: {shown}")
        return "\n".join(lines)


def load_into(
    model: nn.Module,
    state: dict[str, Tensor],
    report: LoadReport,
    fresh: Iterable[str] = (),
    strict: bool = True,
) -> LoadReport:
    """Copy `state` into `model`. Keys the model has but the state lacks must match a `fresh` regex (they
    keep their initialisation) unless strict is False. Any shape mismatch is an error, except vision
    position embeddings, which are bicubically resized."""
    own = model.state_dict()
    state = dict(state)
    _adapt_shapes(own, state, report)
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise CheckpointError(f"shape mismatch loading {report.source}: " + "; ".join(bad[:10]))
    report.unexpected += sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    fresh_res = [re.compile(p) for p in fresh]
    report.initialised += [k for k in missing if any(p.search(k) for p in fresh_res)]
    unexplained = [k for k in missing if k not in report.initialised]
    if unexplained and strict:
        raise CheckpointError(
            f"{report.source} lacks {len(unexplained)} model weights, e.g. {unexplained[:8]}; "
            "is it a checkpoint of this architecture?"
        )
    report.initialised += unexplained
    usable = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report


def _adapt_shapes(own: dict[str, Tensor], state: dict[str, Tensor], report: LoadReport) -> None:
    key = "vision.pos_embed"
    if key in state and key in own and state[key].shape != own[key].shape:
        grid = int(round((own[key].shape[1] - 1) ** 0.5))
        old = tuple(state[key].shape)
        state[key] = resize_pos_embed(state[key].float(), grid)
        report.adapted.append(f"{key} {old} -> {tuple(state[key].shape)} (bicubic)")
