"""Resumable training state: trainable weights, optimizer, scheduler, RNG states and progress.

Only trainable parameters are stored (a PEFT run's checkpoint is the size of its adapters). Each checkpoint is
written into a fresh folder that is renamed into place, and `last` is switched atomically, so a kill at any
moment leaves the previous checkpoint whole and readable. Every file written here gets a SHA-256 digest beside
it (`<file>.sha256`; a checkpoint's in its `manifest.json`), checked on every read: a run never uses weights or
state it did not write. Files from before digests existed are read unchecked.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mile.atomic import WRITE_FAILURES, atomic_write, atomic_write_text, sha256_file, write_failure
from mile.model.checkpoints import CheckpointError

TRAINABLE, OPTIMIZER, PROGRESS, MANIFEST = (
    "trainable.safetensors",
    "optimizer.pt",
    "progress.json",
    "manifest.json",
)
RESTART = "restart the run from scratch (mile train --restart)"


@dataclass
class Progress:
    epoch: int = 0  # the epoch in progress (or the next one when batches_done == 0)
    batches_done: int = 0  # batches of `epoch` already consumed
    step: int = 0  # optimizer steps taken
    skipped_nonfinite: int = 0
    wall_s: float = 0.0  # training time of the processes before this one (resumes add up)
    samples: int = 0  # samples they trained on


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


class NonFiniteWeights(RuntimeError):
    """Trainable weights hold NaN or inf; they are never written (a saved NaN model looks like a result)."""


def finite_state(model: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """The trainable state, refused (NonFiniteWeights) when any tensor holds NaN or inf."""
    state = trainable_state(model)
    bad = [name for name, value in state.items() if not torch.isfinite(value).all()]
    if bad:
        raise NonFiniteWeights(
            f"{len(bad)} of {len(state)} trainable tensors hold NaN or inf (e.g. {', '.join(bad[:3])}); "
            f"{what} was not written"
        )
    return state


def save_trainable(model: nn.Module, file: Path) -> None:
    """The trainable weights as safetensors (atomically; refused when not finite), with their digest in
    `<file>.sha256`."""
    state = finite_state(model, str(file))

    def write(tmp: str) -> None:  # the digest goes first: weights are never in place without theirs
        save_file(state, tmp, metadata={"format": "mile-vqa-trainable"})
        atomic_write_text(_digest_file(file), sha256_file(tmp) + "\n")

    atomic_write(file, write)


def _digest_file(file: Path) -> Path:
    return file.with_name(file.name + ".sha256")


def verify_digest(file: Path, expected: str | None, what: str = RESTART) -> None:
    """Raise CheckpointError unless `file` exists and hashes to `expected` (None: no digest was recorded)."""
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; {what}")
    if expected is not None and sha256_file(file) != expected:
        raise CheckpointError(
            f"{file} is damaged: it is not the file training wrote (SHA-256 differs); {what}"
        )


def load_trainable(model: nn.Module, file: Path) -> None:
    """Load trainable weights (digest checked); every trainable parameter must be present and every key known."""
    digest = _digest_file(file)
    verify_digest(file, digest.read_text().strip() if digest.is_file() else None)
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file} cannot be read as safetensors ({exc}); {RESTART}") from None
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in state)
    if unknown or missing:
        raise ValueError(
            f"{file} does not match this run's model and plan: unknown keys {unknown[:5]}, "
            f"missing trainable parameters {missing[:5]}"
        )
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(params[k].shape)}"
        for k, v in state.items()
        if v.shape != params[k].shape
    ]
    if bad:
        raise ValueError(f"{file} does not match this run's model: " + "; ".join(bad[:5]))
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_checkpoint(directory: Path, model: nn.Module, optimizer, scheduler, progress: Progress) -> Path:
    """Write checkpoints/step-N, then point checkpoints/last at it; older checkpoints are removed."""
    name = f"step-{progress.step:08d}-b{progress.batches_done}"
    state = finite_state(model, f"checkpoint {name}")
    tmp = directory / f".{name}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(state, str(tmp / TRAINABLE), metadata={"format": "mile-vqa-trainable"})
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
            tmp / OPTIMIZER,
        )
        (tmp / PROGRESS).write_text(json.dumps(asdict(progress)))
        digests = {f: sha256_file(tmp / f) for f in (TRAINABLE, OPTIMIZER, PROGRESS)}
        (tmp / MANIFEST).write_text(json.dumps(digests, indent=2))
        final = directory / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except WRITE_FAILURES as exc:
        error = write_failure(directory / name, exc)  # measures the free space before the cleanup
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back: the status still has to be written
        raise error from exc
    atomic_write_text(directory / "last", name)
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint `last` names; None when there is none yet. A `last` that names no checkpoint is an
    error, not a fresh start: resuming from epoch 1 would silently throw the run's progress away."""
    pointer = directory / "last"
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    path = directory / name
    if not name or name.startswith(".") or "/" in name or not (path / PROGRESS).is_file():
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a checkpoint in {directory}; {RESTART}"
        )
    return path


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler) -> Progress:
    """Restore a checkpoint written by save_checkpoint, every file checked against its manifest."""
    digests = _manifest(path)
    for name in (TRAINABLE, OPTIMIZER, PROGRESS):
        verify_digest(path / name, digests.get(name))
    load_trainable(model, path / TRAINABLE)
    try:
        state = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
        progress = Progress(**json.loads((path / PROGRESS).read_text()))
    except (OSError, RuntimeError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); {RESTART}"
        ) from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return progress


def _manifest(path: Path) -> dict[str, str]:
    file = path / MANIFEST
    if not file.is_file():
        return {}  # a checkpoint from before manifests existed
    try:
        digests = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file} cannot be read ({exc}); {RESTART}") from None
    if not isinstance(digests, dict):
        raise CheckpointError(f"{file} is not a manifest of digests; {RESTART}")
    return digests


def _rng_state() -> dict:
    # numpy's key array is stored as a tensor: weights_only unpickling admits tensors, not numpy arrays
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            np_state[2],
            np_state[3],
            np_state[4],
        ],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
