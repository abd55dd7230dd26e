"""Answer ranking: choose each question's answer from a fixed list of candidates by the decoder's likelihood,
as BLIP and LAVIS do for VQA, instead of generating it token by token.

For each question the image and question are encoded once; the decoder's distribution over the first answer
token (after [DEC]) preselects the `top_k` candidates whose first token is most likely, and each of those is
then scored by its whole log-likelihood (teacher-forced: the sum of the log-probabilities of its tokens,
[SEP] included). The best-scoring candidate is the answer. Candidates the preselection drops cannot win.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mile.model.mile import MileModel


@dataclass
class Ranked:
    best: Tensor  # (B,) index of the chosen candidate
    top: Tensor  # (B, k) the preselected candidates, best first
    scores: Tensor  # (B, k) their log-likelihoods (nats), in the same order


@torch.no_grad()
def rank_answers(
    model: MileModel,
    question_ids: Tensor,
    question_mask: Tensor,
    candidate_ids: Tensor,
    candidate_mask: Tensor,
    pixels: Tensor | None = None,
    image_states: Tensor | None = None,
    top_k: int = 128,
    chunk: int = 2048,
) -> Ranked:
    """candidate ids (C, La) start with [DEC] and end with [SEP] (tokenizer.encode_answers); `chunk` bounds how
    many (question, candidate) pairs the decoder scores at once."""
    if image_states is None:
        image_states = model.encode_image(pixels)
    states = model.encode_question(question_ids, question_mask, image_states)  # (B, Lq, D)
    decoder = model.text_decoder
    start = candidate_ids[:1, :1].expand(states.shape[0], 1)  # [DEC] for every question
    first = decoder.logits(decoder(start, context=states, context_mask=question_mask)[:, -1])
    first = F.log_softmax(first.float(), dim=-1)[
        :, candidate_ids[:, 1]
    ]  # (B, C): each candidate's first token
    k = min(top_k, candidate_ids.shape[0])
    top = first.topk(k, dim=-1).indices  # (B, k)
    rows = torch.arange(states.shape[0], device=states.device).repeat_interleave(k)
    pairs = top.reshape(-1)
    # shortest candidates first, so that each chunk is padded only to its own longest answer
    by_length = candidate_mask.sum(dim=1)[pairs].argsort(stable=True)
    scores = torch.empty(pairs.shape[0], device=states.device)
    for part in by_length.split(chunk):
        r, c = rows[part], pairs[part]
        scores[part] = _log_likelihood(
            model, states[r], question_mask[r], candidate_ids[c], candidate_mask[c]
        )
    scores = scores.view(-1, k)
    order = scores.argsort(dim=-1, descending=True, stable=True)
    top, scores = top.gather(1, order), scores.gather(1, order)
    return Ranked(best=top[:, 0], top=top, scores=scores)


def _log_likelihood(model: MileModel, states: Tensor, mask: Tensor, ids: Tensor, ids_mask: Tensor) -> Tensor:
    """(N,) summed log-probability of each answer (its tokens after [DEC]) given its question states. The LM head,
    as costly as the decoder's layers together, runs only where there is a token to predict."""
    width = int(ids_mask.sum(dim=1).max())
    ids, ids_mask = ids[:, :width], ids_mask[:, :width]
    hidden = model.text_decoder(ids, ids_mask, context=states, context_mask=mask)[:, :-1]  # (N, L-1, D)
    where = ids_mask[:, 1:].bool()
    log_probs = F.log_softmax(model.text_decoder.logits(hidden[where]).float(), dim=-1)  # (M, V)
    token = log_probs.gather(1, ids[:, 1:][where][:, None]).squeeze(1)  # (M,)
    return torch.zeros(ids.shape[0], device=ids.device).index_add_(0, where.nonzero()[:, 0], token)
