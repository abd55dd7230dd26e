"""Original BLIP / MISS checkpoints: a `.pth` holding `{"model": state_dict}` (read with weights_only=True).

Such a file carries no architecture, so the caller names one (a size from the table); fused `qkv` projections
are split into q, k, v and pre-training-only parts (momentum encoders, projections, ITM head) are listed and
left out.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mile.model.checkpoints.keymaps import BERT_HEAD_TIED, BLIP_PRETRAIN_ONLY, blip_pth_rules
from mile.model.checkpoints.state import LoadReport, Rule, load_into, read_weights, rename
from mile.model.config import MileConfig
from mile.model.mile import MileModel


def load_blip_pth(path: str | Path, config: MileConfig, strict: bool = True) -> tuple[MileModel, LoadReport]:
    return load_blip_weights(path, config, blip_pth_rules(), strict)


def load_blip_weights(
    path: str | Path, config: MileConfig, rules: list[Rule], strict: bool = True
) -> tuple[MileModel, LoadReport]:
    """A model of `config` holding the BLIP weights file `path` (either layout, as `rules` rename it)."""
    model = MileModel(config)
    state, ignored, unmatched = rename(read_weights(path), rules, BERT_HEAD_TIED + BLIP_PRETRAIN_ONLY)
    report = LoadReport(source=str(path), ignored=ignored, unexpected=unmatched)
    return model, load_into(model, state, report, strict=strict)


def to_blip_pth_state(model: MileModel) -> dict[str, torch.Tensor]:
    """Our weights under the original BLIP names (fused qkv), e.g. to hand a model back to BLIP code."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        out.update(_blip_name(key, value, state))
    out["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.embeddings.word.weight"].clone()
    return out


def _blip_name(key: str, value: torch.Tensor, state: dict) -> dict[str, torch.Tensor]:
    parts = key.split(".")
    tower, rest = parts[0], ".".join(parts[1:])
    if tower == "vision":
        return _vision_name(rest, value, state)
    root = "text_encoder." if tower == "text_encoder" else "text_decoder.bert."
    if rest.startswith("lm_head."):
        sub = {"dense": "transform.dense", "norm": "transform.LayerNorm"}
        head = rest.split(".")
        name = "bias" if head[1] == "bias" else f"{sub[head[1]]}.{head[2]}"
        return {f"text_decoder.cls.predictions.{name}": value}
    if rest.startswith("embeddings."):
        emb = {"word": "word_embeddings", "position": "position_embeddings", "norm": "LayerNorm"}
        _, part, kind = rest.split(".")
        return {f"{root}embeddings.{emb[part]}.{kind}": value}
    _, i, *inner = rest.split(".")
    layer = f"{root}encoder.layer.{i}."
    names = {
        "self_attn_norm": "attention.output.LayerNorm",
        "cross_attn_norm": "crossattention.output.LayerNorm",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
        "mlp_norm": "output.LayerNorm",
    }
    module, kind = ".".join(inner[:-1]), inner[-1]
    if module in names:
        return {f"{layer}{names[module]}.{kind}": value}
    attn, proj = module.split(".")
    theirs = "attention" if attn == "self_attn" else "crossattention"
    full = {"q": "self.query", "k": "self.key", "v": "self.value", "o": "output.dense"}[proj]
    return {f"{layer}{theirs}.{full}.{kind}": value}


def _vision_name(rest: str, value: torch.Tensor, state: dict) -> dict[str, torch.Tensor]:
    v = "visual_encoder."
    if rest in ("cls_token", "pos_embed") or rest.startswith("norm."):
        return {v + rest: value}
    if rest.startswith("patch_embed."):
        return {v + "patch_embed.proj." + rest.split(".")[-1]: value}
    _, i, *inner = rest.split(".")
    module, kind = ".".join(inner[:-1]), inner[-1]
    if module in ("attn.k", "attn.v"):
        return {}  # emitted with q as one fused qkv
    if module == "attn.q":
        fused = torch.cat([state[f"vision.blocks.{i}.attn.{p}.{kind}"] for p in "qkv"], dim=0)
        return {f"{v}blocks.{i}.attn.qkv.{kind}": fused}
    module = "attn.proj" if module == "attn.o" else module
    return {f"{v}blocks.{i}.{module}.{kind}": value}
