"""Our model under transformers' `BlipForQuestionAnswering` names and config: the inverse of `hf_blip_rules`.

Built on `to_blip_pth_state`, which re-fuses the ViT's q, k, v into one `qkv` and names the text towers as
BLIP's .pth and transformers both do; only the ViT's names differ between the two layouts. The LM head's
decoder weight is left out, as transformers saves it: it is the decoder's word embeddings, tied on load.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mile.model.checkpoints.blip_pth import to_blip_pth_state
from mile.model.checkpoints.state import CheckpointError, Rule, rename
from mile.model.config import MileConfig
from mile.model.mile import MileModel

P = r"(?P<kind>weight|bias)"
BLOCK, LAYER = r"visual_encoder\.blocks\.(?P<i>\d+)\.", r"vision_model.encoder.layers.\g<i>."
E = "vision_model.embeddings."
PTH_TO_HF: list[Rule] = [
    (r"visual_encoder\.cls_token", E + "class_embedding"),
    (r"visual_encoder\.pos_embed", E + "position_embedding"),
    (r"visual_encoder\.patch_embed\.proj\." + P, E + r"patch_embedding.\g<kind>"),
    (BLOCK + r"attn\.qkv\." + P, LAYER + r"self_attn.qkv.\g<kind>"),
    (BLOCK + r"attn\.proj\." + P, LAYER + r"self_attn.projection.\g<kind>"),
    (BLOCK + r"norm(?P<n>[12])\." + P, LAYER + r"layer_norm\g<n>.\g<kind>"),
    (BLOCK + r"mlp\.(?P<fc>fc1|fc2)\." + P, LAYER + r"mlp.\g<fc>.\g<kind>"),
    (r"visual_encoder\.norm\." + P, r"vision_model.post_layernorm.\g<kind>"),
    (r"text_(encoder|decoder)\..*", r"\g<0>"),  # the text towers are named alike in both layouts
]
TIED = [f"text_decoder.cls.predictions.decoder.{kind}" for kind in ("weight", "bias")]


def blip_misfits(config: MileConfig) -> list[str]:
    """What in our architecture transformers' BLIP has no place for (empty: it fits)."""
    v, t = config.vision, config.text
    out = []
    if v.layerscale is not None:
        out.append(
            "the ViT has LayerScale (vision.blocks.N.ls1/ls2.gamma, DINOv2-style); BLIP's ViT has none"
        )
    if not v.qkv_bias:
        out.append("vision.qkv_bias is false; BLIP's ViT qkv projection has a bias")
    if v.num_channels != 3:
        out.append(f"vision.num_channels is {v.num_channels}; BLIP's patch embedding takes 3")
    if v.width != t.width:
        out.append(
            f"vision.width {v.width} differs from text.width {t.width}; transformers' BLIP gives the "
            "decoder's cross-attention the ViT's width (text_config.encoder_hidden_size)"
        )
    if config.enc_token_id != config.bos_token_id + 1:  # BlipConfig has no [ENC] id; blip_config derives it
        out.append(f"enc_token_id {config.enc_token_id} is not bos_token_id + 1 ({config.bos_token_id + 1})")
    return out


def to_hf_blip_state(model: MileModel) -> dict[str, Tensor]:
    """Our weights under transformers' BlipForQuestionAnswering names (contiguous, on the CPU)."""
    misfits = blip_misfits(model.config)
    if misfits:
        raise CheckpointError("not a BLIP-shaped model: " + "; ".join(misfits))
    state, _, unmatched = rename(to_blip_pth_state(model), PTH_TO_HF, TIED)
    if unmatched:  # an internal invariant once blip_misfits passed; named rather than dropped silently
        raise CheckpointError(f"no transformers BLIP name for {unmatched[:5]}")
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def hf_blip_config(config: MileConfig) -> dict[str, Any]:
    """`BlipConfig` keyword arguments for our architecture (what `hf_blip.blip_config` reads back)."""
    v, t = config.vision, config.text
    vision = {
        "hidden_size": v.width,
        "intermediate_size": v.mlp_dim,
        "num_hidden_layers": v.depth,
        "num_attention_heads": v.heads,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "layer_norm_eps": v.layer_norm_eps,
        "attention_dropout": v.dropout,
    }
    text = {
        "vocab_size": t.vocab_size,
        "hidden_size": t.width,
        "encoder_hidden_size": v.width,
        "intermediate_size": t.mlp_dim,
        "num_hidden_layers": t.depth,
        "num_attention_heads": t.heads,
        "max_position_embeddings": t.max_positions,
        "layer_norm_eps": t.layer_norm_eps,
        "hidden_dropout_prob": t.dropout,
        "attention_probs_dropout_prob": t.attn_dropout,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,  # [DEC]: generate's first decoder token
        "sep_token_id": config.eos_token_id,  # [SEP]: where generate stops
        "eos_token_id": config.eos_token_id,
        "label_smoothing": config.label_smoothing,  # ours (0.1 by default); transformers' default is 0.0
    }
    return {
        "vision_config": vision,
        "text_config": text,
        "label_smoothing": config.label_smoothing,
        "architectures": ["BlipForQuestionAnswering"],
    }
