"""Build what a run needs from its config: model + tokenizer + tuning plan, datasets, image pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mile.config import Config, ModelSection
from mile.data.augment import Augment
from mile.data.images import ImageTransform
from mile.model.mile import MileModel
from mile.pretrained import Pretrained, build
from mile.tokenizer import MileTokenizer
from mile.tuning import apply_plan


@dataclass
class Session:
    config: Config
    model: MileModel
    tokenizer: MileTokenizer
    tuning: Any  # the handle apply_plan returns
    load_report: Any
    image_norm: str

    def transform(self, train: bool) -> ImageTransform:
        augment = Augment() if train and self.config.data.augment else None
        return ImageTransform(
            size=self.model.config.vision.image_size, normalize=self.image_norm, augment=augment
        )

    def adapter_names(self) -> set[str]:
        """Trainable parameters the plan added (PEFT / native methods), as opposed to trained base weights."""
        return set(self.tuning.adapter_parameter_names())

    def fresh_names(self) -> set[str]:
        """Parameters the checkpoint did not provide (they start from random initialisation)."""
        return set(self.load_report.initialised)


def build_model(m: ModelSection) -> Pretrained:
    """Model and tokenizer as the config's `model` section describes them (before any tuning plan)."""
    init = m.init
    built = build(
        init.kind, size=m.size, image_size=m.image_size, path=init.path, vision=init.vision, text=init.text,
        vocab=init.vocab, max_question_len=m.max_question_len,
    )  # fmt: skip
    built.model.config.label_smoothing = m.label_smoothing
    built.tokenizer.max_answer_len = m.max_answer_len
    return built


def build_session(cfg: Config) -> Session:
    built = build_model(cfg.model)
    tuning = apply_plan(built.model, cfg.plan)
    return Session(cfg, built.model, built.tokenizer, tuning, built.report, resolve_image_norm(cfg))


def resolve_image_norm(cfg: Config) -> str:
    """BLIP checkpoints were trained on CLIP-normalised pixels, DINOv2 / ViT on ImageNet statistics."""
    if cfg.data.image_norm != "auto":
        return cfg.data.image_norm
    return "clip" if cfg.model.init.kind in ("blip_hf", "blip_pth") else "imagenet"
