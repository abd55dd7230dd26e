"""Architecture configuration of a MILE model and the table of named sizes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mile.errors import MileError


class ModelConfigError(MileError, ValueError):
    """A model configuration that cannot build a model (unknown size or key, inconsistent widths, ...)."""


@dataclass
class VisionConfig:
    """A ViT: BLIP's ViT-B/16 or a DINOv2-style ViT (patch 14, LayerScale)."""

    image_size: int = 384
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    layer_norm_eps: float = 1e-6
    layerscale: float | None = None  # LayerScale init value; None: no LayerScale (BLIP)
    qkv_bias: bool = True
    dropout: float = 0.0  # on attention probabilities and residual branches
    drop_path: float = 0.0  # stochastic depth rate, linearly increasing over blocks
    num_channels: int = 3

    @property
    def num_tokens(self) -> int:
        return 1 + (self.image_size // self.patch_size) ** 2


@dataclass
class TextConfig:
    """A BERT-style tower, shared by the JTM text encoder and the text decoder."""

    vocab_size: int = 30524
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    max_positions: int = 512
    layer_norm_eps: float = 1e-12
    dropout: float = 0.0  # hidden-state dropout (BERT's hidden_dropout_prob)
    attn_dropout: float = 0.0  # BERT's attention_probs_dropout_prob
    drop_path: float = 0.0


@dataclass
class MileConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    label_smoothing: float = 0.1
    pad_token_id: int = 0
    bos_token_id: int = 30522  # [DEC]
    enc_token_id: int = 30523  # [ENC]
    eos_token_id: int = 102  # [SEP]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MileConfig:
        """Build from a dict, rejecting unknown keys by name."""
        data = dict(data)
        vision = _build(VisionConfig, data.pop("vision", {}), "vision")
        text = _build(TextConfig, data.pop("text", {}), "text")
        return _build(cls, data, "", vision=vision, text=text)

    def replace(self, **changes: Any) -> MileConfig:
        return dataclasses.replace(self, **changes)


def _build(kind: type, data: dict[str, Any], where: str, **fixed: Any) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ModelConfigError(
            f"unknown model config key(s) {[prefix + k for k in unknown]}; valid: {sorted(names - set(fixed))}"
        )
    return kind(**data, **fixed)


def _tiny() -> MileConfig:
    return MileConfig(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, mlp_dim=64),
        text=TextConfig(width=32, depth=2, heads=2, mlp_dim=64, max_positions=64),
    )


def _blip_base() -> MileConfig:
    # BLIP VQA (ViT-B/16 at 480 px + BERT-base towers), as fine-tuned in BLIP, MISS and MILE.
    return MileConfig(
        vision=VisionConfig(image_size=480, patch_size=16, width=768, depth=12, heads=12, mlp_dim=3072),
        text=TextConfig(width=768, depth=12, heads=12, mlp_dim=3072, dropout=0.1, attn_dropout=0.1),
    )


def _mile_small() -> MileConfig:
    # DINOv2-small (ViT-S/14, LayerScale) + MiniLM-L6-H384 for both text towers: a CPU-sized MILE.
    return MileConfig(
        vision=VisionConfig(
            image_size=224, patch_size=14, width=384, depth=12, heads=6, mlp_dim=1536, layerscale=1.0
        ),
        text=TextConfig(width=384, depth=6, heads=12, mlp_dim=1536, dropout=0.1, attn_dropout=0.1),
    )


SIZES = {"tiny": _tiny, "blip-base": _blip_base, "mile-small": _mile_small}


def size_config(name: str, image_size: int | None = None) -> MileConfig:
    """The architecture of a named size, optionally at another image size."""
    if name not in SIZES:
        raise ModelConfigError(f"unknown model size {name!r}; valid sizes: {sorted(SIZES)}")
    config = SIZES[name]()
    if image_size is not None:
        config.vision.image_size = image_size
    validate(config)
    return config


def validate(config: MileConfig) -> None:
    """Reject architectures that cannot be built, naming the offending key."""
    v, t = config.vision, config.text
    problems = []
    if v.image_size % v.patch_size:
        problems.append(
            f"vision.image_size {v.image_size} is not a multiple of vision.patch_size {v.patch_size}"
        )
    if v.width % v.heads:
        problems.append(f"vision.width {v.width} is not divisible by vision.heads {v.heads}")
    if t.width % t.heads:
        problems.append(f"text.width {t.width} is not divisible by text.heads {t.heads}")
    for tok in ("pad_token_id", "bos_token_id", "enc_token_id", "eos_token_id"):
        if not 0 <= getattr(config, tok) < t.vocab_size:
            problems.append(
                f"{tok} {getattr(config, tok)} is outside the vocabulary (text.vocab_size {t.vocab_size})"
            )
    if problems:
        raise ModelConfigError("invalid model config: " + "; ".join(problems))
