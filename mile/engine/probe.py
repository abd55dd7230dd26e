"""Does a trained model use its inputs? Answer loss with the true image and question, and with either one swapped
for another question's.

A VQA model can reach a respectable loss and the majority-answer accuracy while ignoring both inputs: it has
learnt the answer prior. Accuracy alone does not show that (the majority answer to a closed question is right
about half the time); the loss under swapped inputs does. Each probe pairs every question with the image (or the
question text) of another question of the split, through a random derangement, and keeps the answer; the gap
to the true loss is what the model takes from that input, in nats per answer token. Plain cross-entropy (no
label smoothing), teacher-forced, in eval mode; overall and per answer type (a model can read the image for open
questions and still answer every closed one from the prior).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mile.engine.batches import Collate
from mile.engine.build import Session
from mile.engine.evaluate import eval_dataset
from mile.model.mile import MileModel

# Gaps below this (nats per answer token) read as "the model does not use this input".
UNUSED_BELOW = 0.01
# variant -> (question, image state): 0 the answer's own, 1 its partner's
VARIANTS = {"true": (0, 0), "other_image": (0, 1), "other_question": (1, 0), "both_other": (1, 1)}
GAPS = {"image": "other_image", "question": "other_question", "both": "both_other"}  # gap -> variant


@dataclass
class Tokens:
    """k answers, and 2k questions / image states: the answers' own (0..k-1), then their partners' (k..2k-1)."""

    question_ids: Tensor
    question_mask: Tensor
    answer_ids: Tensor
    answer_mask: Tensor
    image_states: Tensor


def derangement(n: int, seed: int) -> Tensor:
    """A random permutation with no fixed point (every question gets another's input); n >= 2."""
    if n < 2:
        raise ValueError(f"probing needs at least 2 questions, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, dtype=torch.long)
    out[order] = order.roll(-1)  # each question takes the input of the next one in a random cycle
    return out


@torch.no_grad()
def answer_nll(model: MileModel, t: Tokens, question: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
    """Per answer: summed answer-token cross-entropy and token count, with questions / image states taken at the
    indices."""
    q_ids, q_mask = t.question_ids[question], t.question_mask[question]
    states = model.encode_question(q_ids, q_mask, t.image_states[image])
    hidden = model.text_decoder(t.answer_ids, t.answer_mask, context=states, context_mask=q_mask)
    logits = model.text_decoder.logits(hidden)
    per_token = model.answer_loss(logits, t.answer_ids, t.answer_mask, label_smoothing=0.0, reduction="none")
    return per_token.view(len(t.answer_ids), -1).sum(1), t.answer_mask[:, 1:].sum(1)


@torch.no_grad()
def probe_inputs(session: Session, samples: list, batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Mean answer loss per variant over `samples`, the gaps, and a one-line verdict."""
    model = session.model.eval()
    n = len(samples)
    other = derangement(n, seed)
    dataset = eval_dataset(session.config, session, samples)  # the very questions evaluation asks
    collate = Collate(session.tokenizer)
    sums = {name: torch.zeros(n, dtype=torch.float64) for name in VARIANTS}  # per question
    tokens = torch.zeros(n, dtype=torch.long)
    for start in range(0, n, batch_size):
        rows = list(range(start, min(start + batch_size, n)))
        partners = other[rows].tolist()
        # one batch holds the questions and their partners, so every swap stays inside it
        batch = collate([dataset[i] for i in rows + partners])
        k = len(rows)
        t = Tokens(
            batch["question_ids"],
            batch["question_mask"],
            batch["answer_ids"][:k],
            batch["answer_mask"][:k],
            model.encode_image(batch["pixels"]),
        )
        sides = torch.arange(k), torch.arange(k, 2 * k)
        for name, (q, img) in VARIANTS.items():
            total, count = answer_nll(model, t, sides[q], sides[img])
            sums[name][start : start + k] = total.double()
        tokens[start : start + k] = count
    overall = _summary(sums, tokens, torch.ones(n, dtype=torch.bool))
    by_type = {}
    for kind in sorted({s.answer_type for s in samples}):
        chosen = torch.tensor([s.answer_type == kind for s in samples])
        by_type[kind.lower()] = {"n": int(chosen.sum()), **_summary(sums, tokens, chosen)}
    return {
        "n": n,
        "seed": seed,
        **overall,
        "uses_both": min(overall["gap"]["image"], overall["gap"]["question"]) >= UNUSED_BELOW,
        "verdict": verdict(overall["gap"]),
        "by_answer_type": by_type,
    }


def _summary(sums: dict[str, Tensor], tokens: Tensor, chosen: Tensor) -> dict[str, Any]:
    """Mean loss per answer token of each variant over the chosen questions, and the gaps to the true inputs."""
    count = int(tokens[chosen].sum())
    loss = {name: float(sums[name][chosen].sum()) / max(count, 1) for name in VARIANTS}
    return {
        "answer_tokens": count,
        "loss": loss,
        "gap": {gap: loss[variant] - loss["true"] for gap, variant in GAPS.items()},
    }


def verdict(gaps: dict[str, float]) -> str:
    unused = [name for name in ("image", "question") if gaps[name] < UNUSED_BELOW]
    if len(unused) == 2:
        return "ignores both image and question: it answers from the answer prior alone"
    if unused:
        return f"ignores the {unused[0]} (swapping it changes the loss by < {UNUSED_BELOW} nats per token)"
    return "uses both image and question"
