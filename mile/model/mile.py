"""The MILE model: a BLIP/MISS-style generative VQA model of three towers.

image    -> vision (ViT)                                    -> image states    (B, 1+N, Dv)
question -> text_encoder (JTM): self-attn + cross-attn(image) -> question states (B, Lq, D)
answer   -> text_decoder: causal self-attn + cross-attn(question) + LM head -> logits (B, La, V)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mile.model.config import MileConfig, validate
from mile.model.text import TextDecoder, TextTower
from mile.model.vision import VisionTower

TOWERS = ("vision", "text_encoder", "text_decoder")


@dataclass
class VQAOutput:
    loss: Tensor | None  # mean over the answer tokens of the batch
    logits: Tensor  # (B, La, V): the prediction for the token after each answer position
    n_tokens: Tensor | None = None  # how many answer tokens the loss averages (for exact data-parallel means)


class MileModel(nn.Module):
    def __init__(self, config: MileConfig):
        super().__init__()
        validate(config)
        self.config = config
        self.vision = VisionTower(config.vision)
        self.text_encoder = TextTower(config.text, context_width=config.vision.width, causal=False)
        self.text_decoder = TextDecoder(config.text, context_width=config.text.width)
        self.apply(_init_weights)

    def encode_image(self, pixels: Tensor) -> Tensor:
        """pixels (B, 3, H, W) -> image states (B, 1+N, Dv)."""
        return self.vision(pixels)

    def encode_question(self, question_ids: Tensor, question_mask: Tensor, image_states: Tensor) -> Tensor:
        """question ids (B, Lq) starting with [ENC], mask (B, Lq) -> question states (B, Lq, D)."""
        return self.text_encoder(question_ids, question_mask, context=image_states)

    def forward(
        self,
        question_ids: Tensor,
        question_mask: Tensor,
        answer_ids: Tensor,
        answer_mask: Tensor,
        pixels: Tensor | None = None,
        image_states: Tensor | None = None,
        vision_hidden: Tensor | None = None,
        vision_depth: int = 0,
    ) -> VQAOutput:
        """Teacher-forced training forward. answer ids (B, La) start with [DEC]; padding (answer_mask 0) is
        ignored by the loss. Pass `image_states` instead of `pixels` to reuse cached vision features, or
        `vision_hidden`, the ViT's residual stream after its first `vision_depth` (frozen) blocks, to run only
        the blocks above them."""
        # A frozen prefix of the graph (vision, then vision + JTM) runs without autograd: no activations kept.
        prefix_frozen = not is_trainable(self.vision)
        if image_states is None and vision_hidden is not None:
            image_states = self.vision.head(vision_hidden, vision_depth)
        if image_states is None:
            if pixels is None:
                raise ValueError("forward needs either pixels or image_states")
            with torch.set_grad_enabled(torch.is_grad_enabled() and not prefix_frozen):
                image_states = self.encode_image(pixels)
        prefix_frozen = (
            prefix_frozen and not is_trainable(self.text_encoder) and not image_states.requires_grad
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not prefix_frozen):
            question_states = self.encode_question(question_ids, question_mask, image_states)
        states = self.text_decoder(
            answer_ids, answer_mask, context=question_states, context_mask=question_mask
        )
        logits = self.text_decoder.logits(states)
        loss = self.answer_loss(logits, answer_ids, answer_mask)
        return VQAOutput(loss=loss, logits=logits, n_tokens=answer_mask[:, 1:].sum())

    def answer_loss(
        self,
        logits: Tensor,
        answer_ids: Tensor,
        answer_mask: Tensor,
        label_smoothing: float | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        """Token cross-entropy of predicting each next answer token (mean, `sum`, or `none`: per position,
        flattened, 0 at padding), with the model's label smoothing unless another is given (0.0: the plain
        likelihood)."""
        targets = answer_ids[:, 1:].masked_fill(answer_mask[:, 1:] == 0, -100)
        smoothing = self.config.label_smoothing if label_smoothing is None else label_smoothing
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=-100,
            label_smoothing=smoothing,
            reduction=reduction,
        )

    def train(self, mode: bool = True) -> MileModel:
        """Towers with nothing to train stay in eval mode (no dropout noise; deterministic cacheable features),
        and so do the ViT's frozen leading blocks (VisionTower.train)."""
        super().train(mode)
        for name in TOWERS:
            if mode and not is_trainable(getattr(self, name)):
                getattr(self, name).eval()
        return self

    def tower(self, name: str) -> nn.Module:
        if name not in TOWERS:
            raise ValueError(f"unknown tower {name!r}; towers: {list(TOWERS)}")
        return getattr(self, name)


def is_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


@torch.no_grad()
def _init_weights(module: nn.Module) -> None:
    # BERT / BLIP initialisation; pretrained checkpoints overwrite whatever they cover.
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
