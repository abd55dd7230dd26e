"""Trained weights and resumable training state, in one format, never used unless training wrote them.

A run's weights (`weights/`) and each checkpoint's (`checkpoints/step-N/weights/`) are the plan and only what it
trains, in mile.tuning.io's layout: peft's own files for a tower with a peft method (`adapter_config.json` +
`adapter_model.safetensors`; `peft.PeftModel.from_pretrained(model.<tower>, "weights/<tower>")` loads them),
every other trainable parameter as safetensors, and `plan.json`. A checkpoint adds the optimizer, scheduler and
RNG states and the progress.

Every folder written here is built beside its target and renamed into place (`checkpoints/last` is switched
after), with a `manifest.json` of the SHA-256 of each of its files, checked on every read: a kill at any moment
leaves the previous folder whole, and a damaged or replaced file is an error naming it. Weights holding NaN or
inf are never written.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from mile.atomic import WRITE_FAILURES, atomic_write_text, sha256_file, write_failure
from mile.errors import MileError
from mile.model.checkpoints import CheckpointError
from mile.tuning import PlanError, TuningHandle
from mile.tuning.io import load_weights as load_tuned_weights
from mile.tuning.io import save_tuned

WEIGHTS, OPTIMIZER, PROGRESS, MANIFEST = "weights", "optimizer.pt", "progress.json", "manifest.json"
RESTART = "restart the run from scratch"  # the CLI says --restart, a sweep force: the caller knows how


@dataclass
class Progress:
    epoch: int = 0  # the epoch in progress (or the next one when batches_done == 0)
    batches_done: int = 0  # batches of `epoch` already consumed
    step: int = 0  # optimizer steps taken
    skipped_nonfinite: int = 0
    wall_s: float = 0.0  # training time of the processes before this one (resumes add up)
    samples: int = 0  # samples they trained on


class NonFiniteWeights(MileError, RuntimeError):
    """Trainable weights hold NaN or inf; they are never written (a saved NaN model looks like a result)."""


def check_finite(handle: TuningHandle, what: str) -> None:
    trainable = [(n, p) for n, p in handle.model.named_parameters() if p.requires_grad]
    bad = [n for n, p in trainable if not torch.isfinite(p.detach()).all()]
    if bad:
        raise NonFiniteWeights(
            f"{len(bad)} of {len(trainable)} trainable tensors hold NaN or inf (e.g. {', '.join(bad[:3])}); "
            f"{what} was not written"
        )


def save_weights(handle: TuningHandle, directory: Path) -> Path:
    """The plan and what it trains, as a folder renamed into place (refused when not finite)."""
    check_finite(handle, str(directory))
    return _write_folder(directory, lambda tmp: save_tuned(handle, tmp))


def load_weights(handle: TuningHandle, directory: Path) -> None:
    """Load weights written by save_weights (every file checked against the manifest) for the same plan."""
    verify_folder(directory)
    _load_tuned(handle, directory)


def save_checkpoint(directory: Path, handle: TuningHandle, optimizer, scheduler, progress: Progress) -> Path:
    """Write checkpoints/step-N, then point checkpoints/last at it; older checkpoints are removed."""
    name = f"step-{progress.step:08d}-b{progress.batches_done}"
    check_finite(handle, f"checkpoint {name}")

    def fill(tmp: Path) -> None:
        save_tuned(handle, tmp / WEIGHTS)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            "tuning": handle.training_state(),  # e.g. AdaLoRA's importance scores
        }
        torch.save(state, tmp / OPTIMIZER)
        (tmp / PROGRESS).write_text(json.dumps(asdict(progress)))

    final = _write_folder(directory / name, fill)
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
    if not name or name.startswith(".") or "/" in name or not (path / MANIFEST).is_file():
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a checkpoint in {directory}; {RESTART}"
        )
    return path


def load_checkpoint(path: Path, handle: TuningHandle, optimizer, scheduler) -> Progress:
    """Restore a checkpoint written by save_checkpoint, every file checked against its manifest."""
    verify_folder(path)
    _load_tuned(handle, path / WEIGHTS)
    try:
        state = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
        progress = Progress(**json.loads((path / PROGRESS).read_text()))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        handle.load_training_state(state.get("tuning", {}))
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); {RESTART}"
        ) from None
    return progress


def verify_folder(directory: Path) -> None:
    """Raise CheckpointError unless every file the folder's manifest lists is there with its digest."""
    file = directory / MANIFEST
    if not file.is_file():
        what = "it is missing" if not directory.exists() else f"{directory} has no {MANIFEST}"
        raise CheckpointError(f"{directory}: not a complete folder written by mile train ({what}); {RESTART}")
    try:
        digests = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file} cannot be read ({exc}); {RESTART}") from None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise CheckpointError(f"{file} is not a manifest of digests; {RESTART}")
    for name, digest in digests.items():
        path = directory / name
        if ".." in Path(name).parts or not path.is_file():
            raise CheckpointError(f"{path} is missing; {RESTART}")
        if sha256_file(path) != digest:
            raise CheckpointError(
                f"{path} is damaged: it is not the file training wrote (SHA-256 differs); {RESTART}"
            )


def _load_tuned(handle: TuningHandle, directory: Path) -> None:
    try:
        load_tuned_weights(handle, directory)
    except (PlanError, SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{directory} does not fit this run's model and plan: {exc}") from None


def _write_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """`fill` a temp folder beside `target`, add its manifest, then rename it onto `target` (the old folder is
    moved aside first and removed after). A write that fails leaves the old folder and frees its space."""
    tmp, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old.tmp")
    try:
        for stale in (tmp, old):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
        fill(tmp)
        files = sorted(f for f in tmp.rglob("*") if f.is_file())
        digests = {str(f.relative_to(tmp)): sha256_file(f) for f in files}
        (tmp / MANIFEST).write_text(json.dumps(digests, indent=2) + "\n")
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except WRITE_FAILURES as exc:
        error = write_failure(target, exc)  # measures the free space before the cleanup
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back: the status still has to be written
        if old.exists() and not target.exists():
            old.rename(target)
        raise error from exc
    shutil.rmtree(old, ignore_errors=True)
    return target


def _rng_state() -> dict:
    # numpy's key array is stored as a tensor: weights_only unpickling admits tensors, not numpy arrays
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
