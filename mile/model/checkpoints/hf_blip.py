"""transformers BLIP VQA checkpoints: a `Salesforce/blip-vqa-base`-layout directory or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

from mile.model.checkpoints.blip_pth import load_blip_weights
from mile.model.checkpoints.keymaps import hf_blip_rules
from mile.model.checkpoints.state import CheckpointError, LoadReport, find_weights
from mile.model.config import MileConfig, TextConfig, VisionConfig
from mile.model.mile import MileModel

HUB_FILES = ["config.json", "vocab.txt", "tokenizer*.json", "special_tokens_map.json"]


def hub_weight_patterns(files: list[str]) -> list[str]:
    """The weight files to fetch: safetensors where the repository has them (repositories such as
    Salesforce/blip-vqa-base hold the same weights twice, so fetching both doubles the download), else the
    pickled .bin (read with weights_only=True)."""
    if any(f.endswith(".safetensors") for f in files):
        return ["*.safetensors"]
    return ["pytorch_model.bin"]


def resolve_dir(path_or_id: str) -> Path:
    """A local directory as is; otherwise a hub id fetched through huggingface_hub (explicit network use)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or path_or_id.count("/") != 1 or path_or_id.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint directory {path_or_id} not found")
    try:
        from huggingface_hub import list_repo_files, snapshot_download

        weights = hub_weight_patterns(list_repo_files(path_or_id))
        return Path(snapshot_download(path_or_id, allow_patterns=HUB_FILES + weights))
    except Exception as exc:
        raise CheckpointError(
            f"{path_or_id!r} is not a local directory and could not be downloaded from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Offline? Download it elsewhere and pass the directory path."
        ) from exc


def blip_config(directory: Path, image_size: int | None) -> MileConfig:
    """Our architecture from a transformers BlipConfig (config.json)."""
    file = directory / "config.json"
    try:
        raw = json.loads(file.read_text())
        vc, tc = raw["vision_config"], raw["text_config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{file} is not a BLIP config.json (needs vision_config and text_config): {exc}"
        ) from exc
    if raw.get("model_type") not in (None, "blip"):
        raise CheckpointError(f"{file} has model_type {raw.get('model_type')!r}, expected 'blip'")
    vision = VisionConfig(
        image_size=image_size or vc.get("image_size", 384),
        patch_size=vc.get("patch_size", 16),
        width=vc.get("hidden_size", 768),
        depth=vc.get("num_hidden_layers", 12),
        heads=vc.get("num_attention_heads", 12),
        mlp_dim=vc.get("intermediate_size", 3072),
        layer_norm_eps=vc.get("layer_norm_eps", 1e-5),
    )
    text = TextConfig(
        vocab_size=tc.get("vocab_size", 30524),
        width=tc.get("hidden_size", 768),
        depth=tc.get("num_hidden_layers", 12),
        heads=tc.get("num_attention_heads", 8),
        mlp_dim=tc.get("intermediate_size", 3072),
        max_positions=tc.get("max_position_embeddings", 512),
        layer_norm_eps=tc.get("layer_norm_eps", 1e-12),
        dropout=tc.get("hidden_dropout_prob", 0.0),
        attn_dropout=tc.get("attention_probs_dropout_prob", 0.0),
    )
    return MileConfig(
        vision=vision,
        text=text,
        pad_token_id=tc.get("pad_token_id", 0),
        bos_token_id=tc.get("bos_token_id", 30522),
        eos_token_id=tc.get("sep_token_id", 102),
        enc_token_id=tc.get("bos_token_id", 30522) + 1,
    )


def load_hf_blip(path_or_id: str, image_size: int | None = None) -> tuple[MileModel, Path, LoadReport]:
    """Model, the resolved directory (for its tokenizer files) and the load report."""
    directory = resolve_dir(path_or_id)
    config = blip_config(directory, image_size)
    model, report = load_blip_weights(find_weights(directory), config, hf_blip_rules())
    return model, directory, report
