"""Compose a MILE model from unimodal checkpoints, as MISS was initialised: a transformers ViT or DINOv2
directory for the vision tower and one BERT directory for both text towers.

New parts keep their fresh initialisation: every cross-attention, the LM-head transform and bias. The word
embeddings grow by `[DEC]` and `[ENC]` (both start as a copy of `[CLS]`, the token they replace), and BERT's
token-type-0 embedding is folded into the position embeddings, so the text encoder without cross-attention
computes exactly what BertModel does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mile.model.checkpoints.keymaps import BERT_UNUSED, VIT_UNUSED, bert_text_rules, hf_vit_rules
from mile.model.checkpoints.state import (
    CheckpointError,
    LoadReport,
    find_weights,
    load_into,
    read_weights,
    rename,
)
from mile.model.config import MileConfig, TextConfig, VisionConfig
from mile.model.mile import MileModel

FRESH = [r"\.cross_attn\.", r"\.cross_attn_norm\.", r"^text_decoder\.lm_head\."]


def _read_config(directory: Path, kinds: tuple[str, ...]) -> dict:
    file = directory / "config.json"
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc}") from exc
    if raw.get("model_type") not in kinds:
        raise CheckpointError(
            f"{file} has model_type {raw.get('model_type')!r}; expected one of {list(kinds)}"
        )
    return raw


def vision_config(directory: Path, image_size: int) -> VisionConfig:
    raw = _read_config(directory, ("vit", "dinov2"))
    if raw.get("use_swiglu_ffn"):
        raise CheckpointError(f"{directory}: DINOv2 with a SwiGLU feed-forward (giant) is not supported")
    width = raw["hidden_size"]
    dinov2 = raw["model_type"] == "dinov2"
    return VisionConfig(
        image_size=image_size,
        patch_size=raw.get("patch_size", 14 if dinov2 else 16),
        width=width,
        depth=raw["num_hidden_layers"],
        heads=raw["num_attention_heads"],
        mlp_dim=int(width * raw.get("mlp_ratio", 4)) if dinov2 else raw["intermediate_size"],
        layer_norm_eps=raw.get("layer_norm_eps", 1e-6 if dinov2 else 1e-12),
        layerscale=raw.get("layerscale_value", 1.0) if dinov2 else None,
        qkv_bias=raw.get("qkv_bias", True),
    )


def text_config(directory: Path, vocab_size: int) -> TextConfig:
    raw = _read_config(directory, ("bert",))
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{directory}: only absolute position embeddings are supported")
    return TextConfig(
        vocab_size=vocab_size,
        width=raw["hidden_size"],
        depth=raw["num_hidden_layers"],
        heads=raw["num_attention_heads"],
        mlp_dim=raw["intermediate_size"],
        max_positions=raw.get("max_position_embeddings", 512),
        layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
        dropout=raw.get("hidden_dropout_prob", 0.1),
        attn_dropout=raw.get("attention_probs_dropout_prob", 0.1),
    )


def compose(
    vision_dir: str | Path, text_dir: str | Path, image_size: int, token_ids: dict[str, int]
) -> tuple[MileModel, LoadReport]:
    """`token_ids` come from the tokenizer of `text_dir`: pad, cls, sep, bos ([DEC]), enc ([ENC]), vocab_size."""
    vision_dir, text_dir = Path(vision_dir), Path(text_dir)
    config = MileConfig(
        vision=vision_config(vision_dir, image_size),
        text=text_config(text_dir, token_ids["vocab_size"]),
        pad_token_id=token_ids["pad"],
        bos_token_id=token_ids["bos"],
        enc_token_id=token_ids["enc"],
        eos_token_id=token_ids["sep"],
    )
    model = MileModel(config)
    vision_file, text_file = find_weights(vision_dir), find_weights(text_dir)
    report = LoadReport(source=f"{vision_file} + {text_file}")
    state = _vision_state(read_weights(vision_file), report)
    text = _strip(read_weights(text_file), "bert.")
    _fold_token_types(text, report)
    _grow_vocab(text, token_ids, report)
    for tower in ("text_encoder", "text_decoder"):
        renamed, ignored, unmatched = rename(text, bert_text_rules("", tower), BERT_UNUSED)
        state.update(renamed)
        report.ignored += sorted({f"{text_file.name}:{k}" for k in ignored} - set(report.ignored))
        report.unexpected += sorted({f"{text_file.name}:{k}" for k in unmatched} - set(report.unexpected))
    return model, load_into(model, state, report, fresh=FRESH)


def _strip(state: dict, prefix: str) -> dict:
    """Drop the `bert.` / `vit.` / `dinov2.` prefix task-head models put before the backbone."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


def _vision_state(raw: dict, report: LoadReport) -> dict:
    for prefix in ("dinov2.", "vit."):
        raw = _strip(raw, prefix)
    state, ignored, unmatched = rename(raw, hf_vit_rules(), VIT_UNUSED)
    report.ignored += ignored
    report.unexpected += unmatched
    return state


def _fold_token_types(text: dict, report: LoadReport) -> None:
    types = text.pop("embeddings.token_type_embeddings.weight", None)
    if types is not None:
        key = "embeddings.position_embeddings.weight"
        text[key] = text[key] + types[0]
        report.adapted.append("token-type-0 embedding folded into the text position embeddings")


def _grow_vocab(text: dict, token_ids: dict[str, int], report: LoadReport) -> None:
    key = "embeddings.word_embeddings.weight"
    words = text[key]
    extra = token_ids["vocab_size"] - words.shape[0]
    if extra < 0:
        raise CheckpointError(
            f"BERT checkpoint has {words.shape[0]} word embeddings, more than the tokenizer's {token_ids['vocab_size']}"
        )
    if extra:
        rows = words[token_ids["cls"]].expand(extra, -1)
        text[key] = torch.cat([words, rows], dim=0)
        report.adapted.append(
            f"word embeddings grown {words.shape[0]} -> {token_ids['vocab_size']} ([DEC], [ENC] from [CLS])"
        )
