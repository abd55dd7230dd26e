"""Prefix tuning and P-tuning v2 inside the model: cached generation, the shared MLP, every tower."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close
from tuning_helpers import fresh, make_batch, only

from mile.model.attention import Attention
from mile.model.generation import GenerationConfig, _pad_after_eos, generate
from mile.tuning import apply_plan
from mile.tuning.prefix import ENCODER

BOTH = ["*.self_attn", "*.cross_attn"]


@pytest.fixture
def prefixed(base):
    """Prefixes on self- and cross-attention of both text towers, P-tuning v2 in the ViT, all perturbed."""
    model = fresh(base)
    plan = {
        "vision": "ptv2",
        "text_encoder": {"method": "prefix", "encoder_hidden_size": 16, "targets": BOTH},
        "text_decoder": {
            "method": "prefix",
            "num_virtual_tokens": 3,
            "encoder_hidden_size": 16,
            "targets": BOTH,
        },
    }
    handle = apply_plan(model, plan)
    torch.manual_seed(3)
    with torch.no_grad():
        for name in handle.adapter_parameter_names():
            p = model.get_parameter(name)
            p.add_(torch.randn_like(p))
    return model.eval(), handle


def test_cached_decoding_with_prefixes_equals_recomputation(prefixed):
    model, _ = prefixed
    b = make_batch(b=2)
    context_mask = b["question_mask"].bool()
    with torch.no_grad():
        states = model.encode_question(b["question_ids"], b["question_mask"], model.encode_image(b["pixels"]))
        ids, decoder = b["answer_ids"], model.text_decoder
        full = decoder.logits(decoder(ids, context=states, context_mask=context_mask))
        cache = decoder.new_cache()  # one token at a time, keys and values (prefix included) from the cache
        steps = [
            decoder.logits(decoder(ids[:, t : t + 1], context=states, context_mask=context_mask, cache=cache))
            for t in range(ids.shape[1])
        ]
    assert cache[0].self_attn.prefix == 3 and cache[0].cross_attn.prefix == 3
    assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_generation_with_prefixes_equals_uncached_argmax(prefixed):
    model, _ = prefixed
    b = make_batch(b=2)
    out = generate(model, b["question_ids"], b["question_mask"], pixels=b["pixels"],
                   config=GenerationConfig(num_beams=1, max_new_tokens=5))  # fmt: skip
    with torch.no_grad():
        states = model.encode_question(b["question_ids"], b["question_mask"], model.encode_image(b["pixels"]))
        ids = torch.full((2, 1), model.config.bos_token_id)
        for _ in range(5):  # every step recomputes the whole answer so far, no cache
            h = model.text_decoder(ids, context=states, context_mask=b["question_mask"].bool())
            ids = torch.cat([ids, model.text_decoder.logits(h[:, -1]).argmax(-1, keepdim=True)], dim=1)
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    assert torch.equal(out, _pad_after_eos(ids[:, 1:], eos, pad))  # generation pads after [SEP]
    beams = generate(model, b["question_ids"], b["question_mask"], pixels=b["pixels"])  # runs with prefixes
    assert beams.shape[0] == 2


def test_the_prefix_mlp_runs_once_per_tower_forward(base, batch):
    model = fresh(base)
    apply_plan(model, only("text_decoder", {"method": "prefix", "encoder_hidden_size": 16, "targets": BOTH}))
    calls = []
    getattr(model.text_decoder, ENCODER).transform.register_forward_hook(lambda *args: calls.append(1))
    model(**batch)
    assert len(calls) == 1  # not once per each of the 4 attentions
    model(**batch)
    assert len(calls) == 2  # and afresh each forward, so it follows the weights
    copy.deepcopy(model)  # the kept prefixes (inside the autograd graph) do not block copying the model


def test_prefixes_are_exact_under_gradient_checkpointing(base, batch):
    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)  # the same prefix initialisation both times
        model = fresh(base)
        apply_plan(
            model, only("text_decoder", {"method": "prefix", "encoder_hidden_size": 16, "targets": BOTH})
        )
        model.train()
        model.text_decoder.gradient_checkpointing = recompute
        model(**batch).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert_close(grads[1][name], grads[0][name], msg=name)


def test_every_tower_and_cross_attention_is_reached(prefixed, base, batch):
    model, handle = prefixed
    assert len(handle.targets()["text_decoder"]) == 4  # 2 layers x (self + cross)
    with torch.no_grad():
        image = model.encode_image(batch["pixels"])
        assert not torch.allclose(image, base.encode_image(batch["pixels"]))
        with handle.disabled():
            assert_close(model.encode_image(batch["pixels"]), base.encode_image(batch["pixels"]))
            assert all(m.prefix is None for m in model.modules() if isinstance(m, Attention))
    cross = model.text_encoder.layers[0].cross_attn
    assert cross.prefix is not None and cross.prefix()[0].shape == (10, 32)


def test_prefix_parameters_belong_to_their_tower(prefixed):
    _, handle = prefixed
    report = handle.trainable_report()["towers"]
    # decoder: Embedding(3, 32) -> Linear(32, 16) -> Tanh -> Linear(16, 4 attentions x 2 x 32)
    assert report["text_decoder"]["trainable"] == 3 * 32 + 32 * 16 + 16 + 16 * 256 + 256
    assert report["vision"]["trainable"] == 10 * 2 * 2 * 32  # P x layers x (k, v) x D
    assert all(n.split(".")[1] == ENCODER for n in handle.adapter_parameter_names())


def test_prefixes_must_target_attention(base):
    from mile.tuning import PlanError

    with pytest.raises(PlanError, match="needs attention modules"):
        apply_plan(fresh(base), only("text_decoder", {"method": "ptv2", "targets": ["*.mlp"]}))
