"""Reading a weights folder (plan + per-tower files, see mile.engine.checkpoint) back as plain tensors."""

from pathlib import Path

import torch
from safetensors.torch import load_file


def saved_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file under `directory`, keyed `<file relative path>:<tensor name>`."""
    return {
        f"{file.relative_to(directory)}:{name}": value
        for file in sorted(Path(directory).rglob("*.safetensors"))
        for name, value in load_file(str(file)).items()
    }


def same_tensors(a: Path, b: Path) -> bool:
    x, y = saved_tensors(a), saved_tensors(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
