"""Attention masks, the key/value cache and learned prefixes."""

import torch
from torch.testing import assert_close

from mile.model.attention import Attention, KVCache
from mile.model.config import size_config
from mile.model.generation import GenerationConfig, beam_hypotheses, generate
from mile.model.mile import MileModel


def _reference(attn, x, context=None, key_mask=None, causal=False, prefix=None):
    """Plain softmax attention, written out, for comparison."""
    src = x if context is None else context
    q, k, v = attn.q(x), attn.k(src), attn.v(src)
    if prefix is not None:
        k, v = (
            torch.cat([prefix[0].expand(x.shape[0], -1, -1), k], 1),
            torch.cat([prefix[1].expand(x.shape[0], -1, -1), v], 1),
        )
    b, t, d = q.shape
    h = attn.heads
    q, k, v = (z.view(b, -1, h, d // h).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / (d // h) ** 0.5
    n_prefix = 0 if prefix is None else prefix[0].shape[1]
    allowed = torch.ones(b, 1, t, k.shape[2], dtype=torch.bool)
    if key_mask is not None:
        allowed[..., n_prefix:] &= key_mask.bool()[:, None, None, :]
    if causal:
        allowed[..., n_prefix:] &= torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    return attn.o(out)


def _case():
    """An attention (D 16, 4 heads), queries, a context, a key mask over the context, one over the queries (for
    self-attention), and a 3-token prefix."""
    torch.manual_seed(0)
    attn = Attention(16, 4).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    km = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    sm = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    return attn, x, ctx, km, sm, (torch.randn(1, 3, 16), torch.randn(1, 3, 16))


def test_masks_causality_and_prefix_match_reference():
    attn, x, ctx, km, sm, prefix = _case()
    assert_close(attn(x), _reference(attn, x))
    assert_close(attn(x, ctx, key_mask=km), _reference(attn, x, ctx, key_mask=km))
    assert_close(attn(x, causal=True), _reference(attn, x, causal=True))
    assert_close(attn(x, key_mask=sm, causal=True)[0], _reference(attn, x, key_mask=sm, causal=True)[0])
    attn.prefix = lambda: (prefix[0][0], prefix[1][0])
    assert_close(attn(x, causal=True), _reference(attn, x, causal=True, prefix=prefix))
    assert_close(attn(x, ctx, key_mask=km), _reference(attn, x, ctx, key_mask=km, prefix=prefix))


def test_cached_decoding_equals_full_recomputation():
    torch.manual_seed(0)
    attn = Attention(16, 4).eval()
    attn.prefix = lambda: (torch.ones(2, 16), -torch.ones(2, 16))
    x = torch.randn(2, 6, 16)
    full = attn(x, causal=True)
    cache = KVCache()
    steps = [attn(x[:, i : i + 1], causal=True, cache=cache) for i in range(6)]
    assert cache.prefix == 2 and cache.length == 6
    assert_close(torch.cat(steps, 1), full)


def test_generation_with_cache_equals_step_by_step_full_forward():
    torch.manual_seed(0)
    model = MileModel(size_config("tiny")).eval()
    q = torch.randint(1000, 3000, (3, 6))
    q[:, 0] = model.config.enc_token_id
    mask = torch.ones_like(q)
    mask[2, 4:] = 0
    pixels = torch.randn(3, 3, 32, 32)
    got = generate(
        model,
        q,
        mask,
        pixels=pixels,
        config=GenerationConfig(num_beams=1, max_new_tokens=6, min_new_tokens=0),
    )
    seq = torch.full((3, 1), model.config.bos_token_id)
    with torch.no_grad():
        states = model.encode_question(q, mask, model.encode_image(pixels))
        for _ in range(6):
            h = model.text_decoder(seq, context=states, context_mask=mask)
            seq = torch.cat([seq, model.text_decoder.logits(h[:, -1]).argmax(-1, keepdim=True)], 1)
    expected = seq[:, 1:]
    eos = model.config.eos_token_id
    after = (expected == eos).long().cumsum(1) - (expected == eos).long() > 0
    assert torch.equal(got, expected.masked_fill(after, model.config.pad_token_id))


def _peaked_decoder_case(seed: int, batch: int):
    """A tiny model whose decoder is perturbed (so that its answers are not all alike), with a batch of
    unpadded questions and images."""
    torch.manual_seed(seed)
    model = MileModel(size_config("tiny")).eval()
    with torch.no_grad():
        for p in model.text_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    q = torch.randint(1000, 3000, (batch, 5))
    return model, q, torch.ones_like(q), torch.randn(batch, 3, 32, 32)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model, q, mask, pixels = _peaked_decoder_case(1, 4)

    def logprob(seqs):
        ids = torch.cat([torch.full((4, 1), model.config.bos_token_id), seqs], 1)
        with torch.no_grad():
            out = model(q, mask, ids, torch.ones_like(ids), pixels=pixels)
        lp = out.logits[:, :-1].log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]
        return lp.sum(1)

    cfg = dict(max_new_tokens=4)
    greedy = generate(model, q, mask, pixels=pixels, config=GenerationConfig(num_beams=1, **cfg))
    beam = generate(model, q, mask, pixels=pixels, config=GenerationConfig(num_beams=5, **cfg))
    assert (logprob(beam) >= logprob(greedy) - 1e-4).all()


def test_beam_hypotheses_score_what_the_decoder_gives_them():
    # every kept hypothesis: its score is its teacher-forced log-likelihood up to [SEP] / length ** penalty,
    # the scores come best first, and the first hypothesis is what generate answers
    model, q, mask, pixels = _peaked_decoder_case(2, 2)
    config = GenerationConfig(num_beams=4, max_new_tokens=5, length_penalty=1.0)
    with torch.no_grad():
        ids, scores = beam_hypotheses(model, q, mask, pixels, config)
    assert ids.shape == (2, 4, 5) and scores.shape == (2, 4)
    assert torch.equal(ids[:, 0], generate(model, q, mask, pixels=pixels, config=config))
    eos, checked = model.config.eos_token_id, 0
    for b in range(2):
        assert scores[b].tolist() == sorted(scores[b].tolist(), reverse=True)
        for k in range(4):
            if scores[b, k] == float("-inf"):
                continue
            seq = ids[b, k].tolist()
            length = seq.index(eos) + 1 if eos in seq else len(seq)
            answer = torch.tensor([[model.config.bos_token_id, *seq[:length]]])
            with torch.no_grad():
                out = model(
                    q[b : b + 1], mask[b : b + 1], answer, torch.ones_like(answer), pixels=pixels[b : b + 1]
                )
            lp = out.logits[0, :-1].log_softmax(-1).gather(1, answer[0, 1:, None]).sum()
            assert_close(scores[b, k], lp / length, rtol=1e-4, atol=1e-4)
            checked += 1
    assert checked >= 4


def test_bf16_on_a_cpu_takes_the_matmul_path_and_matches_the_reference(monkeypatch):
    """Under bf16 autocast small score matrices skip SDPA (its CPU kernel is slow in bf16) for explicit GEMMs;
    masks, causality, prefixes and the cache give what the fp32 reference gives, to bf16 rounding."""
    attn, x, ctx, km, sm, prefix = _case()
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        "mile.model.attention.F.scaled_dot_product_attention",
        lambda *a, **k: calls.append(1) or sdpa(*a, **k),
    )

    def bf16(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn(*args, **kwargs)
        assert out.dtype == torch.bfloat16
        return out.float()

    tolerance = dict(rtol=3e-2, atol=3e-2)  # bf16 keeps 8 significant bits
    assert_close(bf16(x), _reference(attn, x), **tolerance)
    assert_close(bf16(x, ctx, key_mask=km), _reference(attn, x, ctx, key_mask=km), **tolerance)
    assert_close(bf16(x, causal=True), _reference(attn, x, causal=True), **tolerance)
    both = bf16(x, key_mask=sm, causal=True)[0]
    assert_close(both, _reference(attn, x, key_mask=sm, causal=True)[0], **tolerance)
    attn.prefix = lambda: (prefix[0][0], prefix[1][0])
    assert_close(bf16(x, causal=True), _reference(attn, x, causal=True, prefix=prefix), **tolerance)
    cache = KVCache()
    steps = torch.cat([bf16(x[:, i : i + 1], causal=True, cache=cache) for i in range(5)], dim=1)
    assert_close(steps, _reference(attn, x, causal=True, prefix=prefix), **tolerance)
    assert not calls  # every one of these took the matmul path
    import mile.model.attention as module

    monkeypatch.setattr(module, "MATMUL_MAX_SCORES", 5 * 7)  # larger score matrices go to SDPA
    assert_close(bf16(x, causal=True), _reference(attn, x, causal=True, prefix=prefix), **tolerance)
    assert calls == [1]


def test_bf16_matmul_attention_trains_like_sdpa():
    """The gradients of the explicit path match SDPA's (both in bf16) and attention dropout still applies."""
    torch.manual_seed(0)
    attn = Attention(16, 4, dropout=0.5)
    x = torch.randn(2, 5, 16, requires_grad=True)

    def grad(max_scores: int) -> torch.Tensor:
        import mile.model.attention as module

        before, module.MATMUL_MAX_SCORES = module.MATMUL_MAX_SCORES, max_scores
        try:
            attn.eval()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                attn(x, causal=True).float().pow(2).sum().backward()
        finally:
            module.MATMUL_MAX_SCORES = before
        g, x.grad = x.grad, None
        return g

    assert_close(grad(2**17), grad(0), rtol=5e-2, atol=5e-2)
    attn.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = attn(x), attn(x)
    assert not torch.equal(a, b)  # dropout on the attention weights
