"""Answer generation: batched greedy and beam search over the text decoder with a key/value cache.

Beam search follows the scoring of BLIP's (transformers') generate, so answers match it: a hypothesis ends at
[SEP] or at the length limit and is scored by its summed log-probability divided by (generated length) **
length_penalty; the search stops once no running beam can beat the worst kept hypothesis.
Cross-attention keys and values are computed once per question and shared by its beams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mile.model.config import MileConfig
from mile.model.mile import MileModel
from mile.model.text import LayerCache

NEG = -1.0e9  # the "impossible" score, as large as fp32 keeps exact when added to log-probabilities


@dataclass
class GenerationConfig:
    num_beams: int = 3
    max_new_tokens: int = 10
    min_new_tokens: int = 1  # an empty answer is never right: [SEP] is barred before this many tokens
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"generation num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens < 1:
            raise ValueError(f"generation max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"generation min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}"
            )


class _Decoder:
    """Runs the decoder one token at a time for a flat batch of beams, holding the cache."""

    def __init__(self, model: MileModel, question_states: Tensor, question_mask: Tensor, min_new_tokens: int):
        self.model = model
        self.min_new_tokens = min_new_tokens
        self.produced = 0  # tokens generated so far
        self.decoder = model.text_decoder
        self.context = question_states
        self.context_mask = question_mask
        self.cache: list[LayerCache] = self.decoder.new_cache()

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (N,) -> next-token log-probabilities (N, V)."""
        states = self.decoder(
            tokens[:, None], context=self.context, context_mask=self.context_mask, cache=self.cache
        )
        log_probs = F.log_softmax(self.decoder.logits(states[:, -1]).float(), dim=-1)
        if self.produced < self.min_new_tokens:  # as transformers' MinNewTokens processor: after the softmax
            log_probs[:, self.model.config.eos_token_id] = float("-inf")
        self.produced += 1
        return log_probs

    def reorder(self, index: Tensor) -> None:
        """Keep / duplicate beams: row i of the new batch continues row index[i] of the old one."""
        for layer in self.cache:
            layer.self_attn.reorder(index)
            layer.cross_attn.reorder(index)
        self.context_mask = self.context_mask.index_select(0, index)


@torch.no_grad()
def generate(
    model: MileModel,
    question_ids: Tensor,
    question_mask: Tensor,
    pixels: Tensor | None = None,
    image_states: Tensor | None = None,
    config: GenerationConfig | None = None,
) -> Tensor:
    """Answer token ids (B, L) without the leading [DEC], padded with the pad id after [SEP]."""
    config = config or GenerationConfig()
    if image_states is None:
        if pixels is None:
            raise ValueError("generate needs either pixels or image_states")
        image_states = model.encode_image(pixels)
    question_states = model.encode_question(question_ids, question_mask, image_states)
    decoder = _Decoder(model, question_states, question_mask.bool(), config.min_new_tokens)
    bos = torch.full((question_ids.shape[0],), model.config.bos_token_id, device=question_ids.device)
    first = decoder.step(bos)  # every beam of a question starts identically: run it once per question
    if config.num_beams == 1:
        return _greedy(decoder, first, model.config, config.max_new_tokens)
    return _beam_search(decoder, first, model.config, config)[0][:, 0]


def beam_hypotheses(
    model: MileModel,
    question_ids: Tensor,
    question_mask: Tensor,
    pixels: Tensor,
    config: GenerationConfig,
) -> tuple[Tensor, Tensor]:
    """Every finished hypothesis of the beam search, best first: ids (B, K, L) as `generate` returns them, and
    their scores (B, K), log-likelihood / length ** length_penalty (the order beam search keeps them in; a slot
    the search never filled scores -inf)."""
    question_states = model.encode_question(question_ids, question_mask, model.encode_image(pixels))
    decoder = _Decoder(model, question_states, question_mask.bool(), config.min_new_tokens)
    bos = torch.full((question_ids.shape[0],), model.config.bos_token_id, device=question_ids.device)
    kept, scores = _beam_search(decoder, decoder.step(bos), model.config, config)
    return kept, scores.masked_fill(scores <= NEG / 2, float("-inf"))


def _greedy(decoder: _Decoder, log_probs: Tensor, ids: MileConfig, max_new: int) -> Tensor:
    b = log_probs.shape[0]
    out = torch.full((b, max_new), ids.pad_token_id, dtype=torch.long, device=log_probs.device)
    done = torch.zeros(b, dtype=torch.bool, device=log_probs.device)
    for t in range(max_new):
        token = log_probs.argmax(-1).masked_fill(done, ids.pad_token_id)
        out[:, t] = token
        done |= token == ids.eos_token_id
        if bool(done.all()) or t == max_new - 1:
            break
        log_probs = decoder.step(token)
    return out


def _beam_search(
    decoder: _Decoder, log_probs: Tensor, ids: MileConfig, config: GenerationConfig
) -> tuple[Tensor, Tensor]:
    """The kept hypotheses (B, K, L), best first, and their length-normalised scores (B, K)."""
    b, vocab = log_probs.shape
    k, max_new, device = config.num_beams, config.max_new_tokens, log_probs.device
    decoder.reorder(torch.arange(b, device=device).repeat_interleave(k))
    log_probs = log_probs.repeat_interleave(k, dim=0)
    running = torch.full((b, k, max_new), ids.pad_token_id, dtype=torch.long, device=device)
    running_scores = torch.full((b, k), NEG, device=device)
    running_scores[:, 0] = 0.0  # only the first copy of each question may expand at step 0
    kept = running.clone()  # finished hypotheses, best first
    kept_scores = torch.full((b, k), NEG, device=device)
    kept_full = torch.zeros(b, k, dtype=torch.bool, device=device)
    searching = torch.ones(b, dtype=torch.bool, device=device)
    offsets = torch.arange(b, device=device)[:, None] * k
    for t in range(max_new):
        scores = (log_probs.view(b, k, vocab) + running_scores[:, :, None]).view(b, k * vocab)
        top_scores, top_index = scores.topk(2 * k, dim=1)  # (B, 2K), best first
        parent, token = top_index // vocab, top_index % vocab
        candidates = running.gather(1, parent[:, :, None].expand(-1, -1, max_new)).clone()
        candidates[:, :, t] = token
        ends = (token == ids.eos_token_id) | (t == max_new - 1)
        # a. the best K candidates that go on become the running beams
        live_scores = top_scores + ends.float() * NEG
        live = live_scores.topk(k, dim=1).indices
        running = candidates.gather(1, live[:, :, None].expand(-1, -1, max_new))
        running_scores = live_scores.gather(1, live)
        # b. candidates that end among the top K are kept if they beat the kept ones
        finished_now = ends & (torch.arange(2 * k, device=device) < k)[None, :] & searching[:, None]
        normed = top_scores / float(t + 1) ** config.length_penalty + (~finished_now).float() * NEG
        merged = torch.cat([kept_scores, normed], dim=1).topk(k, dim=1).indices
        kept = torch.cat([kept, candidates], dim=1).gather(1, merged[:, :, None].expand(-1, -1, max_new))
        kept_scores = torch.cat([kept_scores, normed], dim=1).gather(1, merged)
        kept_full = torch.cat([kept_full, finished_now], dim=1).gather(1, merged)
        # c. stop a question once its best running beam cannot beat its worst kept hypothesis
        best_possible = running_scores[:, 0] / float(t + 1) ** config.length_penalty
        worst_kept = torch.where(kept_full, kept_scores.min(dim=1, keepdim=True).values, NEG)
        searching &= (best_possible[:, None] > worst_kept).any(dim=1)
        if t == max_new - 1 or not bool(searching.any()) or bool(ends.all()):
            break
        decoder.reorder((parent.gather(1, live) + offsets).view(-1))
        log_probs = decoder.step(running[:, :, t].reshape(-1))
    return _pad_after_eos(kept, ids.eos_token_id, ids.pad_token_id), kept_scores


def _pad_after_eos(seqs: Tensor, eos: int, pad: int) -> Tensor:
    after = (seqs == eos).long().cumsum(dim=-1) - (seqs == eos).long() > 0
    return seqs.masked_fill(after, pad)
