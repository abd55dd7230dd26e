"""The same BLIP VQA model on both sides: our MileModel and transformers' BlipForQuestionAnswering, built from
one saved transformers checkpoint, with the same tuning plan (ours through mile.tuning, theirs through peft).

Used by step_vs_transformers.py. Plans: `T-T-T` (every parameter trained) and `T-T-LoRA_r8` (ViT and JTM fully
trained, LoRA r=8, alpha 32, dropout 0 on query/value of the decoder's self- and cross-attention).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mile.model.checkpoints import load_hf_blip
from mile.model.checkpoints.hf_blip import blip_config
from mile.model.config import MileConfig, size_config
from mile.model.mile import TOWERS
from mile.tuning import apply_plan

if TYPE_CHECKING:
    from transformers import BlipConfig

LORA = {
    "r": 8,
    "alpha": 32,
    "dropout": 0.0,
}  # the paper's LoRA, without dropout so both sides do the same work
PLANS = ("T-T-T", "T-T-LoRA_r8")
# transformers' names of the modules our `text_decoder.*.{self_attn,cross_attn}.{q,v}` are
THEIR_LORA_TARGETS = (
    r"text_decoder\.bert\.encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|value)"
)
# ours+ckpt: gradient checkpointing in all three towers; ours+bf16: bf16 autocast (fp32 weights and loss)
KINDS = ("ours", "theirs", "ours+ckpt", "ours+bf16")


@dataclass(frozen=True)
class Job:
    """What one worker process builds and runs."""

    directory: str
    plan: str
    image_size: int
    batch: int
    question_len: int
    answer_len: int
    warmup: int
    threads: int
    heads: int
    head_dim: int


def architecture(quick: bool, image_size: int) -> MileConfig:
    """The benchmarked architecture with every dropout at 0 (train mode then does no random work)."""
    cfg = size_config("tiny" if quick else "blip-base", image_size)
    return cfg.replace(
        vision=replace(cfg.vision, dropout=0.0, drop_path=0.0),
        text=replace(cfg.text, dropout=0.0, attn_dropout=0.0, drop_path=0.0),
    )


def hf_config(cfg: MileConfig) -> BlipConfig:
    """transformers' BlipConfig of the same architecture (no dropout)."""
    from transformers import BlipConfig  # imported where needed: our worker process never loads transformers

    v, t = cfg.vision, cfg.text
    text = dict(vocab_size=t.vocab_size, hidden_size=t.width, encoder_hidden_size=v.width)
    text.update(intermediate_size=t.mlp_dim, num_hidden_layers=t.depth, num_attention_heads=t.heads)
    text.update(max_position_embeddings=t.max_positions, layer_norm_eps=t.layer_norm_eps)
    text.update(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, label_smoothing=cfg.label_smoothing
    )
    text.update(pad_token_id=cfg.pad_token_id, bos_token_id=cfg.bos_token_id, sep_token_id=cfg.eos_token_id)
    vision = dict(hidden_size=v.width, intermediate_size=v.mlp_dim, num_hidden_layers=v.depth)
    vision.update(num_attention_heads=v.heads, image_size=v.image_size, patch_size=v.patch_size)
    vision.update(layer_norm_eps=v.layer_norm_eps, attention_dropout=0.0)
    return BlipConfig(text_config=text, vision_config=vision)


def save_checkpoint(cfg: MileConfig, directory: Path) -> None:
    """Random transformers weights of `cfg`, saved where both sides load them; checks the architectures agree."""
    from transformers import BlipForQuestionAnswering

    torch.manual_seed(0)
    BlipForQuestionAnswering(hf_config(cfg)).save_pretrained(directory)
    ours = blip_config(directory, cfg.vision.image_size)
    if ours != cfg:
        raise RuntimeError(f"the saved BLIP config reads back as\n{ours}\nnot as the benchmarked\n{cfg}")


def make_batch(job: Job, cfg: MileConfig) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    b, s = job.batch, job.image_size
    question = torch.randint(1000, 30000, (b, job.question_len), generator=g)
    question[:, 0] = cfg.enc_token_id
    answer = torch.randint(1000, 30000, (b, job.answer_len), generator=g)
    answer[:, 0] = cfg.bos_token_id
    pixels = torch.randn(b, 3, s, s, generator=g)
    return dict(pixels=pixels, question=question, answer=answer)


def tune_ours(model: nn.Module, plan: str, checkpointing: bool) -> None:
    if plan == "T-T-LoRA_r8":
        apply_plan(
            model, {"vision": "full", "text_encoder": "full", "text_decoder": {"method": "lora", **LORA}}
        )
    for tower in TOWERS:
        model.tower(tower).gradient_checkpointing = checkpointing


def tune_theirs(model: nn.Module, plan: str) -> nn.Module:
    if plan != "T-T-LoRA_r8":
        return model
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules=THEIR_LORA_TARGETS
    )
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or name.startswith(("vision_model.", "text_encoder.")))
    return model


def build(kind: str, job: Job) -> tuple[nn.Module, Callable[[], Tensor]]:
    """The tuned model (train mode) and a closure computing its training loss on a fixed batch."""
    if kind.startswith("ours"):
        model, _, _ = load_hf_blip(job.directory, image_size=job.image_size)
        tune_ours(model, job.plan, checkpointing=kind == "ours+ckpt")
    else:
        from transformers import BlipForQuestionAnswering

        model = tune_theirs(BlipForQuestionAnswering.from_pretrained(job.directory), job.plan)
    model.train()
    cfg = blip_config(Path(job.directory), job.image_size)
    x = make_batch(job, cfg)
    q_mask, a_mask = torch.ones_like(x["question"]), torch.ones_like(x["answer"])

    def ours_loss() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "ours+bf16"):
            return model(x["question"], q_mask, x["answer"], a_mask, pixels=x["pixels"]).loss

    def theirs_loss() -> Tensor:
        return model(
            input_ids=x["question"],
            pixel_values=x["pixels"],
            attention_mask=q_mask,
            decoder_input_ids=x["answer"],
            decoder_attention_mask=a_mask,
            labels=x["answer"],
        ).loss

    return model, ours_loss if kind.startswith("ours") else theirs_loss
