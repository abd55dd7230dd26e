"""Adapter-only checkpoints: the plan plus only what it trains, loadable onto a freshly built base model.

    <dir>/plan.json                        {"format": "mile-tuning", "version": 1, "notation": ..., "plan": {...}}
    <dir>/<tower>/adapter_config.json      peft's layout, where the tower has a peft method (also loads with
    <dir>/<tower>/adapter_model.safetensors   peft.PeftModel.from_pretrained(model.<tower>, "<dir>/<tower>"))
    <dir>/<tower>/trainable.safetensors    every other trainable parameter of the tower, by full name: prefixes,
                                           bottleneck adapters, fully or partially trained base weights

A frozen tower writes nothing. Loading checks that the plan is the same and that every trainable parameter is
found, so a checkpoint never half-loads silently. This is the one format of trained weights: `mile train` writes
it for a run's weights and for each checkpoint (mile.engine.checkpoint adds digests and atomic renames).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mile.tuning.base import TOWERS
from mile.tuning.errors import PlanError
from mile.tuning.handle import TuningHandle, apply_plan
from mile.tuning.plan import PlanConfig

FORMAT, VERSION = "mile-tuning", 1
PLAN_FILE, TRAINABLE_FILE = "plan.json", "trainable.safetensors"


@contextmanager
def _unmerged(handle: TuningHandle):
    """Weights are read and written unmerged, so a merged model saves and loads the same numbers."""
    merged = [a for a in handle.applied.values() if a.merged]
    for a in merged:
        a.unmerge()
    try:
        yield
    finally:
        for a in merged:
            a.merge()


def _own_trainable(handle: TuningHandle, tower: str) -> dict[str, nn.Parameter]:
    """The tower's trainable parameters that its method does not save itself."""
    applied = handle.applied.get(tower)
    skip = applied.saved_parameters() if applied else set()
    prefix = tower + "."
    return {
        n: p
        for n, p in handle.model.named_parameters()
        if n.startswith(prefix) and p.requires_grad and n not in skip
    }


def save_tuned(handle: TuningHandle, directory: str | Path) -> Path:
    """Write the plan and only what it trains into `directory` (the layout above)."""
    directory = Path(directory)
    outside = [
        n for n, p in handle.model.named_parameters() if p.requires_grad and n.split(".")[0] not in TOWERS
    ]
    if outside:  # nothing would save them
        raise PlanError(f"trainable parameters outside the towers {list(TOWERS)}: {outside[:5]}")
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "notation": handle.plan.notation(),
        "plan": handle.plan.model_dump(mode="json"),
    }
    (directory / PLAN_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    with _unmerged(handle):
        for tower in TOWERS:
            applied, own = handle.applied.get(tower), _own_trainable(handle, tower)
            if applied is None and not own:
                continue
            tower_dir = directory / tower
            tower_dir.mkdir(exist_ok=True)
            if applied is not None:
                applied.save(tower_dir)
            if own:
                state = {n: p.detach().cpu().contiguous() for n, p in own.items()}
                save_file(state, str(tower_dir / TRAINABLE_FILE), metadata={"format": FORMAT})
    return directory


def read_plan(directory: str | Path) -> PlanConfig:
    """The plan a checkpoint directory was saved with."""
    file = Path(directory) / PLAN_FILE
    if not file.is_file():
        raise PlanError(f"{directory} is not a tuning checkpoint: {PLAN_FILE} is missing")
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PlanError(
            f"{file}: format {meta.get('format')!r} v{meta.get('version')}; "
            f"this version reads {FORMAT!r} v{VERSION}"
        )
    return PlanConfig.model_validate(meta["plan"])


def load_weights(handle: TuningHandle, directory: str | Path) -> None:
    """Load what `save_tuned` wrote for the same plan onto the handle's model."""
    directory = Path(directory)
    saved = read_plan(directory)
    if saved != handle.plan:
        theirs, ours = _flat(saved.model_dump()), _flat(handle.plan.model_dump())
        keys = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        differ = "; ".join(f"{k}: saved {theirs.get(k)!r}, here {ours.get(k)!r}" for k in keys[:4])
        raise PlanError(
            f"{directory} was saved with plan {saved.notation()}, not this model's {handle.plan.notation()} ({differ})"
        )
    with _unmerged(handle):
        for tower in TOWERS:
            applied, own = handle.applied.get(tower), _own_trainable(handle, tower)
            if applied is not None:
                applied.load(directory / tower)
            if own:
                _load_own(own, directory / tower / TRAINABLE_FILE)


def _flat(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: data}


def _load_own(own: dict[str, nn.Parameter], file: Path) -> None:
    if not file.is_file():
        raise PlanError(
            f"{file} is missing: it should hold {len(own)} trained parameters, e.g. {list(own)[:3]}"
        )
    state = load_file(str(file))
    missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [
        f"{n}: file {tuple(v.shape)} vs model {tuple(own[n].shape)}"
        for n, v in state.items()
        if n in own and v.shape != own[n].shape
    ]
    if missing or unknown or bad:
        raise PlanError(
            f"{file} does not fit the model: missing {missing[:5]}, unexpected {unknown[:5]}, "
            f"shape mismatches {bad[:5]}"
        )
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(value)


def load_tuned(model: nn.Module, directory: str | Path) -> TuningHandle:
    """Apply the plan saved in `directory` to a base model and load its trained weights. The model stays in the
    mode it was in (injected layers arrive in training mode: dropout on, in an eval-mode model)."""
    training = model.training
    handle = apply_plan(model, read_plan(directory))
    load_weights(handle, directory)
    model.train(training)
    return handle
