"""Our own checkpoint format: a directory with `config.json` (architecture) and `model.safetensors`."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from mile.atomic import atomic_write, atomic_write_json
from mile.model.checkpoints.state import CheckpointError, LoadReport, load_into, read_weights
from mile.model.config import MileConfig
from mile.model.mile import MileModel

FORMAT, VERSION = "mile-vqa", 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def save_model(model: MileModel, directory: str | Path) -> Path:
    """Write config and weights atomically (temp file + rename): a crash never leaves half a file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    atomic_write_json(
        directory / CONFIG_FILE, {"format": FORMAT, "version": VERSION, "model": model.config.to_dict()}
    )
    return directory


def read_config(directory: str | Path) -> MileConfig:
    file = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{file} is not a {FORMAT} checkpoint config (missing "format": "{FORMAT}")')
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{file} has format version {meta.get('version')}; this mile reads version {VERSION}"
        )
    try:
        return MileConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: bad model config: {exc}") from exc


def load_model(directory: str | Path, image_size: int | None = None) -> tuple[MileModel, LoadReport]:
    config = read_config(directory)
    if image_size is not None:
        config.vision.image_size = image_size
    model = MileModel(config)
    weights = Path(directory) / WEIGHTS_FILE
    return model, load_into(model, read_weights(weights), LoadReport(source=str(weights)))
