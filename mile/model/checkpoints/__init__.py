"""Loading real checkpoints into a MileModel, each with a report of what was loaded, skipped or initialised."""

from mile.model.checkpoints.blip_pth import load_blip_pth, to_blip_pth_state
from mile.model.checkpoints.hf_blip import load_hf_blip, resolve_dir
from mile.model.checkpoints.native import load_model, read_config, save_model
from mile.model.checkpoints.state import CheckpointError, LoadReport, read_weights
from mile.model.checkpoints.unimodal import compose

__all__ = [
    "CheckpointError",
    "LoadReport",
    "compose",
    "load_blip_pth",
    "load_hf_blip",
    "load_model",
    "read_config",
    "read_weights",
    "resolve_dir",
    "save_model",
    "to_blip_pth_state",
]
