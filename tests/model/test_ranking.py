"""Answer ranking: scores are the teacher-forced log-likelihood of each candidate, the preselection keeps the
candidates whose first token is likeliest, and batching or chunking changes nothing."""

import pytest
import torch
from torch.testing import assert_close

from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.model.ranking import rank_answers


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = MileModel(size_config("tiny")).eval()
    with torch.no_grad():  # random init answers almost uniformly: perturb it so candidates differ clearly
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    cfg = model.config
    q = torch.randint(1000, 3000, (3, 6))
    q[:, 0] = cfg.enc_token_id
    q_mask = torch.ones_like(q)
    q_mask[2, 4:] = 0
    # 7 candidates of 1 to 3 tokens: [DEC] tokens [SEP], padded
    lengths = [1, 2, 3, 2, 2, 3, 1]
    cand = torch.zeros(7, 5, dtype=torch.long)
    cand_mask = torch.zeros_like(cand)
    for i, n in enumerate(lengths):
        cand[i, 0] = cfg.bos_token_id
        cand[i, 1 : 1 + n] = torch.randint(1000, 3000, (n,))
        cand[i, 1 + n] = cfg.eos_token_id
        cand_mask[i, : n + 2] = 1
    cand[3, 1] = cand[0, 1]  # two candidates share a first token (and differ after it)
    pixels = torch.randn(3, 3, 32, 32)
    return model, q, q_mask, cand, cand_mask, pixels


def _brute_force(model, q, q_mask, cand, cand_mask, pixels) -> torch.Tensor:
    """(B, C) log-likelihood of every candidate for every question, one full forward per pair."""
    out = torch.empty(q.shape[0], cand.shape[0])
    for b in range(q.shape[0]):
        for c in range(cand.shape[0]):
            logits = model(
                q[b : b + 1], q_mask[b : b + 1], cand[c : c + 1], cand_mask[c : c + 1], pixels[b : b + 1]
            )
            nll = model.answer_loss(
                logits.logits, cand[c : c + 1], cand_mask[c : c + 1], 0.0, reduction="sum"
            )
            out[b, c] = -nll
    return out


def test_scores_are_each_candidates_log_likelihood_and_the_best_wins(setup):
    model, q, q_mask, cand, cand_mask, pixels = setup
    truth = _brute_force(*setup)
    ranked = rank_answers(model, q, q_mask, cand, cand_mask, pixels=pixels, top_k=100)
    assert ranked.top.shape == (3, 7)  # top_k above the candidate count: all of them
    assert_close(ranked.scores, truth.gather(1, ranked.top), rtol=1e-4, atol=1e-4)
    assert torch.equal(ranked.best, truth.argmax(dim=1))
    assert (ranked.scores[:, :-1] >= ranked.scores[:, 1:]).all()  # best first
    assert len({tuple(row) for row in ranked.top.tolist()}) > 1  # the order depends on the question


def test_preselection_keeps_the_candidates_with_the_likeliest_first_token(setup):
    model, q, q_mask, cand, cand_mask, pixels = setup
    states = model.encode_question(q, q_mask, model.encode_image(pixels))
    start = cand[:1, :1].expand(3, 1)
    first = model.text_decoder.logits(model.text_decoder(start, context=states, context_mask=q_mask)[:, -1])
    first = first.log_softmax(-1)[:, cand[:, 1]]
    ranked = rank_answers(model, q, q_mask, cand, cand_mask, pixels=pixels, top_k=2)
    for b in range(3):
        assert set(ranked.top[b].tolist()) == set(first[b].topk(2).indices.tolist())
    truth = _brute_force(*setup)
    best_of_two = [max(ranked.top[b].tolist(), key=lambda c, b=b: truth[b, c]) for b in range(3)]
    assert ranked.best.tolist() == best_of_two


def test_batching_and_chunking_change_nothing(setup):
    model, q, q_mask, cand, cand_mask, pixels = setup
    whole = rank_answers(model, q, q_mask, cand, cand_mask, pixels=pixels, top_k=5)
    chunked = rank_answers(model, q, q_mask, cand, cand_mask, pixels=pixels, top_k=5, chunk=3)
    assert torch.equal(whole.top, chunked.top)
    assert_close(whole.scores, chunked.scores)
    for b in range(3):
        alone = rank_answers(
            model, q[b : b + 1], q_mask[b : b + 1], cand, cand_mask, pixels=pixels[b : b + 1], top_k=5
        )
        assert torch.equal(alone.top[0], whole.top[b])
        assert_close(alone.scores[0], whole.scores[b], rtol=1e-5, atol=1e-5)
    states = model.encode_image(pixels)  # cached image features give the same ranking
    cached = rank_answers(model, q, q_mask, cand, cand_mask, image_states=states, top_k=5)
    assert torch.equal(cached.top, whole.top)
