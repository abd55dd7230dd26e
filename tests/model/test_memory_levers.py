"""Frozen graph prefixes run without autograd; gradient checkpointing recomputes without changing gradients."""

import pytest
import torch
from torch.testing import assert_close

from mile.model.config import size_config
from mile.model.mile import MileModel


def _batch():
    torch.manual_seed(0)
    q, a = torch.randint(1000, 3000, (2, 6)), torch.randint(1000, 3000, (2, 4))
    qm = torch.ones_like(q)
    qm[1, 4:] = 0
    return dict(
        question_ids=q,
        question_mask=qm,
        answer_ids=a,
        answer_mask=torch.ones_like(a),
        pixels=torch.randn(2, 3, 32, 32),
    )


def _saved_bytes(model, batch):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    return total, loss


@pytest.mark.parametrize("frozen", [["vision"], ["vision", "text_encoder"]])
def test_frozen_prefix_keeps_no_activations(frozen):
    torch.manual_seed(0)
    model = MileModel(size_config("tiny"))
    outputs = {}
    for name in ("vision", "text_encoder"):
        model.tower(name).register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
    full_bytes, _ = _saved_bytes(model, _batch())
    for name in frozen:
        model.tower(name).requires_grad_(False)
    model.train()
    bytes_, loss = _saved_bytes(model, _batch())
    for name in frozen:
        assert not outputs[name].requires_grad, f"{name} ran with autograd although frozen"
        assert not model.tower(name).training, "a frozen tower runs in eval mode"
    assert bytes_ < full_bytes
    loss.backward()
    assert all(p.grad is None for name in frozen for p in model.tower(name).parameters())


def test_frozen_vision_under_trainable_jtm_still_trains_the_jtm():
    torch.manual_seed(0)
    model = MileModel(size_config("tiny"))
    model(**_batch()).loss.backward()  # reference: nothing frozen
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if not n.startswith("vision.")}
    model.zero_grad(set_to_none=True)
    model.vision.requires_grad_(False)
    model(**_batch()).loss.backward()
    assert all(p.grad is None for p in model.vision.parameters())
    # Freezing the vision only drops its own gradients: the JTM and the decoder get exactly the gradients they
    # get when everything trains (tiny has no dropout), none of them zero.
    got = {n: p.grad for n, p in model.named_parameters() if not n.startswith("vision.")}
    assert got.keys() == reference.keys() and all(g is not None for g in got.values())
    for name, grad in got.items():
        assert_close(grad, reference[name], rtol=1e-5, atol=1e-7, msg=name)
        assert grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize(
    "towers", [["vision"], ["text_encoder", "text_decoder"], ["vision", "text_encoder", "text_decoder"]]
)
def test_gradient_checkpointing_gives_the_same_gradients(towers):
    torch.manual_seed(0)
    model = MileModel(size_config("tiny"))  # tiny has no dropout: both passes see identical computations
    model.text_encoder.embeddings.requires_grad_(False)  # frozen embeddings feeding checkpointed layers

    def grads():
        model.zero_grad()
        model(**_batch()).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reference = grads()
    for name in towers:
        model.tower(name).gradient_checkpointing = True
    got = grads()
    assert got.keys() == reference.keys()
    for name in reference:
        assert_close(got[name], reference[name], rtol=1e-5, atol=1e-6)
