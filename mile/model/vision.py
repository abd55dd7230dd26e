"""The vision tower: a pre-norm ViT covering BLIP's ViT-B/16 and DINOv2-style ViTs (patch 14, LayerScale)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mile.model.attention import Attention
from mile.model.config import VisionConfig
from mile.model.layers import DropPath, LayerScale, Mlp, checkpointed, drop_path_rates


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.width, cfg.heads, bias=cfg.qkv_bias, dropout=cfg.dropout)
        self.ls1 = LayerScale(cfg.width, cfg.layerscale) if cfg.layerscale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_dim, cfg.dropout)
        self.ls2 = LayerScale(cfg.width, cfg.layerscale) if cfg.layerscale is not None else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.ls1(self.drop(self.attn(self.norm1(x)))))
        return x + self.drop_path(self.ls2(self.drop(self.mlp(self.norm2(x)))))


class VisionTower(nn.Module):
    """image (B, C, H, W) -> states (B, 1 + N, D); position embeddings are stored at the configured size."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.num_channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.width))
        rates = drop_path_rates(cfg.drop_path, cfg.depth)
        self.blocks = nn.ModuleList(VisionBlock(cfg, rate) for rate in rates)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.gradient_checkpointing = False  # recompute block activations in backward (memory lever)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def embed(self, pixels: Tensor) -> Tensor:
        b, _, h, w = pixels.shape
        size = self.cfg.image_size
        if (h, w) != (size, size):
            raise ValueError(
                f"image batch is {h}x{w} px but the vision tower is configured for {size}x{size}"
            )
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        return x + self.pos_embed.to(x.dtype)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.head(self.embed(pixels), 0)

    def trunk(self, pixels: Tensor, depth: int) -> Tensor:
        """The residual stream after the embeddings and the first `depth` blocks (what a feature cache keeps
        when only the blocks above them train)."""
        return self._run(self.embed(pixels), self.blocks[:depth])

    def head(self, x: Tensor, start: int) -> Tensor:
        """Blocks `start` onwards, then the final norm: the rest of the forward from a trunk's states."""
        return self.norm(self._run(x, self.blocks[start:]))

    def _run(self, x: Tensor, blocks: nn.ModuleList) -> Tensor:
        for block in blocks:
            x = checkpointed(block, x) if self.gradient_checkpointing and self.training else block(x)
        return x

    def train(self, mode: bool = True) -> VisionTower:
        """Frozen leading blocks stay in eval mode: no dropout noise below the trained ones, so their output is
        a function of the image that a feature cache may keep."""
        super().train(mode)
        if mode:
            self.blocks[: self.frozen_depth()].eval()
        return self

    def frozen_depth(self) -> int:
        """How many leading blocks, with the embeddings before them, nothing trains: their output depends on the
        image alone. Every block when nothing in the tower trains; 0 when a trainable parameter lives outside
        the blocks and the final norm (a prefix encoder, trained embeddings), whose effect could reach any
        block."""
        first = len(self.blocks)
        for name, param in self.named_parameters():
            if not param.requires_grad or name.startswith("norm."):
                continue
            parts = name.split(".")
            if parts[0] != "blocks":
                return 0
            first = min(first, int(parts[1]))
        return first


def resize_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """Bicubically resize (1, 1 + g*g, D) position embeddings to a grid x grid patch layout (class slot kept)."""
    n = pos.shape[1] - 1
    old = int(round(n**0.5))
    if old * old != n:
        raise ValueError(f"position embeddings hold {n} patch slots, not a square grid")
    if old == grid:
        return pos
    cls, patches = pos[:, :1], pos[:, 1:]
    dim = pos.shape[-1]
    patches = patches.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos.dtype)
    return torch.cat([cls, patches], dim=1)
