"""The one attention module of every tower: self or cross, optional causal mask, optional key/value prefix.

Attention goes through `torch.nn.functional.scaled_dot_product_attention`, so no attention map is kept for
backward beyond what the fused kernel needs, with one exception: bf16 on a CPU with small score matrices. There
torch's fused CPU kernel runs at about a tenth of the bf16 GEMM peak (benchmarks/README.md section 8), and two
batched bf16 GEMMs around a softmax are 1.5-7x faster (a mile-small T-T-T step at 224 px: 1.3x); the price is
the scores kept for backward, B*H*T*S bf16 values per layer (12.7 MB for a ViT-S layer at 224 px, batch 16),
which `MATMUL_MAX_SCORES` bounds (larger images fall back to the fused kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# A key/value prefix provider returns (k, v), each (P, D) or (B, P, D), in the projected space (after k/v).
PrefixFn = Callable[[], tuple[Tensor, Tensor]]
# T x S scores per head up to which bf16 attention on a CPU uses explicit GEMMs (362^2: a 224 px ViT-S/14 layer's
# 257^2, every text attention; not a 336 px layer's 577^2)
MATMUL_MAX_SCORES = 2**17


@dataclass
class KVCache:
    """Keys and values of one attention, (B, H, S, hd) each, kept across decoding steps."""

    k: Tensor | None = None
    v: Tensor | None = None
    prefix: int = 0  # how many leading slots hold the learned prefix

    @property
    def length(self) -> int:
        """Positions held, prefix excluded."""
        return 0 if self.k is None else self.k.shape[2] - self.prefix

    def reorder(self, index: Tensor) -> None:
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v, o projections.

    Self-attention when `context` is None, else cross-attention over `context` (width `kv_width`).
    `prefix` (set by prefix tuning / P-tuning v2) prepends learned keys and values that every query sees.
    """

    def __init__(
        self, width: int, heads: int, kv_width: int | None = None, bias: bool = True, dropout: float = 0.0
    ):
        super().__init__()
        kv_width = kv_width or width
        self.heads = heads
        self.head_dim = width // heads
        self.q = nn.Linear(width, width, bias=bias)
        self.k = nn.Linear(kv_width, width, bias=bias)
        self.v = nn.Linear(kv_width, width, bias=bias)
        self.o = nn.Linear(width, width)
        self.dropout = dropout
        self.prefix: PrefixFn | None = None

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape  # (B, N, D) -> (B, H, N, hd)
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def _prefix_heads(self, batch: int) -> tuple[Tensor, Tensor] | None:
        if self.prefix is None:
            return None
        pk, pv = self.prefix()
        if pk.dim() == 2:  # (P, D) shared by the batch
            pk, pv = pk.unsqueeze(0).expand(batch, -1, -1), pv.unsqueeze(0).expand(batch, -1, -1)
        return self._heads(pk), self._heads(pv)

    def _keys_values(
        self, source: Tensor, cache: KVCache | None, is_cross: bool
    ) -> tuple[Tensor, Tensor, int]:
        """Keys and values over prefix + (past) + new positions; also returns how many prefix slots lead."""
        if cache is not None and cache.k is not None and is_cross:
            return cache.k, cache.v, cache.prefix
        k, v = self._heads(self.k(source)), self._heads(self.v(source))
        if cache is not None and cache.k is not None:  # decoding step: the prefix is already in the cache
            k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
            cache.k, cache.v = k, v
            return k, v, cache.prefix
        n_prefix = 0
        prefix = self._prefix_heads(source.shape[0])
        if prefix is not None:
            n_prefix = prefix[0].shape[2]
            k, v = torch.cat([prefix[0].to(k.dtype), k], dim=2), torch.cat([prefix[1].to(v.dtype), v], dim=2)
        if cache is not None:
            cache.k, cache.v, cache.prefix = k, v, n_prefix
        return k, v, n_prefix

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """x (B, T, D); context (B, S, Dkv) or None; key_mask (B, S_keys) bool, True = attend, over the
        non-prefix keys (past included when decoding with a cache). Returns (B, T, D)."""
        b, t, _ = x.shape
        is_cross = context is not None
        past = 0 if (cache is None or is_cross) else cache.length
        q = self._heads(self.q(x))
        k, v, n_prefix = self._keys_values(context if is_cross else x, cache, is_cross)
        mask = _build_mask(b, t, k.shape[2], n_prefix, past, key_mask, causal and not is_cross, x.device)
        use_causal_kernel = mask is None and causal and not is_cross and k.shape[2] == t
        dropout = self.dropout if self.training else 0.0
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and t * k.shape[2] <= MATMUL_MAX_SCORES:
            if use_causal_kernel:
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            out = _matmul_attention(q, k, v, mask, dropout)
        else:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None if use_causal_kernel else mask,
                dropout_p=dropout,
                is_causal=use_causal_kernel,
            )
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


def _matmul_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    """softmax(q k^T / sqrt(hd)) v with the scores explicit, as SDPA's math path: q (B, H, T, hd), k and v
    (B, H, S, hd), mask broadcastable to (B, H, T, S), True = attend. torch's CPU softmax accumulates in fp32."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout) if dropout else torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v)


def _build_mask(
    batch: int,
    t: int,
    s_total: int,
    n_prefix: int,
    past: int,
    key_mask: Tensor | None,
    causal: bool,
    device: torch.device,
) -> Tensor | None:
    """Boolean mask (B|1, 1, T, S_total), True = attend; None when every query sees every key
    (or when plain causal attention over exactly T keys can use the fused causal kernel)."""
    s = s_total - n_prefix
    # A single new query sees every earlier key; T queries over exactly T keys use the fused causal kernel.
    need_causal = causal and t > 1 and not (n_prefix == 0 and past == 0 and s == t and key_mask is None)
    if key_mask is None and not need_causal:
        return None
    mask = torch.ones(1, 1, t, s, dtype=torch.bool, device=device)
    if need_causal:
        q_pos = torch.arange(past, past + t, device=device).unsqueeze(1)
        mask = mask & (torch.arange(s, device=device).unsqueeze(0) <= q_pos)
    if key_mask is not None:
        if key_mask.shape != (batch, s):
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}, expected {(batch, s)}")
        mask = mask & key_mask.bool()[:, None, None, :]
    if n_prefix:
        mask = torch.cat([mask.new_ones(mask.shape[0], 1, t, n_prefix), mask], dim=-1)
    return mask
