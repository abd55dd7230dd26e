"""The text towers: the JTM text encoder and the text decoder (post-norm BERT layers with cross-attention)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mile.model.attention import Attention, KVCache
from mile.model.config import TextConfig
from mile.model.layers import DropPath, Mlp, checkpointed, drop_path_rates


class TextEmbeddings(nn.Module):
    """Word + absolute position embeddings, LayerNorm, dropout. No token types (BERT's type-0 row is folded
    into the position embeddings when a BERT checkpoint is loaded)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position = nn.Embedding(cfg.max_positions, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        n = ids.shape[1]
        if offset + n > self.position.num_embeddings:
            raise ValueError(
                f"sequence of {offset + n} tokens exceeds text.max_positions {self.position.num_embeddings}"
            )
        positions = torch.arange(offset, offset + n, device=ids.device)
        return self.drop(self.norm(self.word(ids) + self.position(positions)))


@dataclass
class LayerCache:
    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=KVCache)


class TextLayer(nn.Module):
    """Self-attention, cross-attention (skipped when no context is given), feed-forward; post-norm as BERT."""

    def __init__(self, cfg: TextConfig, context_width: int, drop_path: float):
        super().__init__()
        self.self_attn = Attention(cfg.width, cfg.heads, dropout=cfg.attn_dropout)
        self.self_attn_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.cross_attn = Attention(cfg.width, cfg.heads, kv_width=context_width, dropout=cfg.attn_dropout)
        self.cross_attn_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_dim)
        self.mlp_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        context: Tensor | None,
        context_mask: Tensor | None,
        causal: bool,
        cache: LayerCache | None = None,
    ) -> Tensor:
        h = self.self_attn(x, key_mask=mask, causal=causal, cache=cache and cache.self_attn)
        x = self.self_attn_norm(x + self.drop_path(self.drop(h)))
        if context is not None:
            h = self.cross_attn(x, context, key_mask=context_mask, cache=cache and cache.cross_attn)
            x = self.cross_attn_norm(x + self.drop_path(self.drop(h)))
        return self.mlp_norm(x + self.drop_path(self.drop(self.mlp(x))))


class TextTower(nn.Module):
    """Embeddings and layers. `causal=False`: the JTM encoder; `causal=True`: the body of the decoder."""

    def __init__(self, cfg: TextConfig, context_width: int, causal: bool):
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.embeddings = TextEmbeddings(cfg)
        rates = drop_path_rates(cfg.drop_path, cfg.depth)
        self.layers = nn.ModuleList(TextLayer(cfg, context_width, rate) for rate in rates)
        self.gradient_checkpointing = False  # recompute block activations in backward (memory lever)

    def forward(
        self,
        ids: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """ids (B, T); mask (B, T_all) bool over past + new tokens; context (B, S, Dc). Returns (B, T, D)."""
        offset = 0 if cache is None else cache[0].self_attn.length
        x = self.embeddings(ids, offset)
        mask = None if mask is None or bool(mask.all()) else mask.bool()
        if context_mask is not None and bool(context_mask.all()):
            context_mask = None
        recompute = self.gradient_checkpointing and self.training and cache is None
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpointed(layer, x, mask, context, context_mask, self.causal)
            else:
                x = layer(x, mask, context, context_mask, self.causal, None if cache is None else cache[i])
        return x

    def new_cache(self) -> list[LayerCache]:
        return [LayerCache() for _ in self.layers]


class LMHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm, then the tied word embeddings plus an own bias."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.width, cfg.width)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x: Tensor, word_weight: Tensor) -> Tensor:
        return F.linear(self.norm(self.act(self.dense(x))), word_weight, self.bias)


class TextDecoder(TextTower):
    """The answer decoder: causal text tower cross-attending to the JTM states, plus the tied LM head."""

    def __init__(self, cfg: TextConfig, context_width: int):
        super().__init__(cfg, context_width, causal=True)
        self.lm_head = LMHead(cfg)

    def logits(self, states: Tensor) -> Tensor:
        return self.lm_head(states, self.embeddings.word.weight)
