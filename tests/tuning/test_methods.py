"""The contract every method keeps, on the `tiny` model (width D 32, feed-forward 64, 2 layers per tower,
8 px patches): identity at initialisation where promised; after a few steps exactly its own parameters have
changed and each had a gradient; disabling gives the base model back; merging keeps the outputs; an adapter-only
checkpoint loads onto a fresh base model to identical outputs; the trainable count has its closed form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.testing import assert_close
from tuning_helpers import fresh, logits, only, snapshot, train_steps

from mile.tuning import apply_plan, count_parameters, load_tuned
from mile.tuning.io import save_tuned
from mile.tuning.partial import PartialApplied
from mile.tuning.peft_method import PeftApplied

D, F, L, P = 32, 64, 2, 10  # width, feed-forward width, layers, virtual tokens
QKVO = 4 * (D * D)  # weights of one attention's four projections (for reading the closed forms)


@dataclass(frozen=True)
class Case:
    id: str
    tower: str
    spec: Any
    closed: int | None  # trainable parameters, worked out by hand; None where the method's layout is peft's
    identity: bool = True
    removable: bool = True
    mergeable: bool = False


TEXT_QV = 2 * L * 2  # q and v of self- and cross-attention, per text tower
CASES = [
    Case("lora-dec", "text_decoder", {"method": "lora", "r": 8, "alpha": 32, "dropout": 0.1},
         8 * TEXT_QV * (D + D), mergeable=True),
    # q, k, v, o, fc1, fc2 per block, and the patch conv: A (r, 3, 8, 8) and B (D, r, 1, 1)
    Case("lora-vit", "vision", "lora", 8 * (L * (4 * 2 * D + 2 * (D + F)) + 3 * 8 * 8 + D), mergeable=True),
    Case("dora-enc", "text_encoder", {"method": "lora", "use_dora": True},
         8 * TEXT_QV * 2 * D + TEXT_QV * D, mergeable=True),  # + a magnitude per output feature
    Case("rslora-dec", "text_decoder", {"method": "lora", "use_rslora": True, "r": 4}, 4 * TEXT_QV * 2 * D,
         mergeable=True),
    # k, v scale outputs (D each); o and fc2 are feed-forward, scaling inputs (D and F), in self and cross
    Case("ia3-enc", "text_encoder", "ia3", L * (2 * (2 * D + D) + F), mergeable=True),
    Case("ia3-vit", "vision", "ia3", L * F, mergeable=True),  # fc2's F inputs per block: 3,072 at blip-base
    Case("loha-dec", "text_decoder", {"method": "loha", "r": 4}, TEXT_QV * 2 * 4 * (D + D), mergeable=True),
    Case("lokr-enc", "text_encoder", "lokr", None, mergeable=True),
    Case("adalora-dec", "text_decoder", {"method": "adalora", "total_step": 50},
         TEXT_QV * 12 * (D + D + 1), mergeable=True),  # init_r x (in + out + 1 singular value)
    Case("vera-enc", "text_encoder", {"method": "vera", "r": 16}, TEXT_QV * (16 + D), mergeable=True),
    Case("oft-dec", "text_decoder", "oft", None, mergeable=True),
    Case("boft-vit", "vision", {"method": "boft", "boft_block_size": 4}, None, mergeable=True),
    Case("hra-dec", "text_decoder", "hra", None, mergeable=True),  # any other peft tuner, by name
    Case("ln_tuning-vit", "vision", "ln_tuning", (2 * L + 1) * 2 * D, mergeable=True),
    Case("prefix-dec", "text_decoder",
         {"method": "prefix", "encoder_hidden_size": 16, "targets": ["*.self_attn", "*.cross_attn"]},
         P * D + (D * 16 + 16) + (16 * 2 * L * 2 * D + 2 * L * 2 * D), identity=False),
    Case("prefix-vit", "vision", {"method": "prefix", "encoder_hidden_size": 16},
         P * D + (D * 16 + 16) + (16 * L * 2 * D + L * 2 * D), identity=False),
    Case("ptv2-enc", "text_encoder", "ptv2", P * L * 2 * D, identity=False),
    Case("houlsby-dec", "text_decoder", "houlsby", 3 * L * (D * 2 + 2 + 2 * D + D)),  # hidden D // 16 = 2
    Case("pfeiffer-vit", "vision", {"method": "pfeiffer", "reduction_factor": 4}, L * (D * 8 + 8 + 8 * D + D)),
    Case("layernorm-dec", "text_decoder", "layernorm", (1 + 3 * L + 1) * 2 * D, removable=False),
    # biases of 8 projections, 3 LayerNorms, fc1 and fc2 per layer, plus the embedding LayerNorm's
    Case("bitfit-enc", "text_encoder", "bitfit", L * (8 * D + 3 * D + F + D) + D, removable=False),
    Case("attention-vit", "vision", "attention", L * (QKVO + 4 * D), removable=False),
    Case("ffn-dec", "text_decoder", "ffn", L * (2 * D * F + F + D), removable=False),
    # the last vision block whole: attention, feed-forward, two LayerNorms
    Case("blocks-vit-last", "vision", {"method": "blocks", "layers": [-1]},
         QKVO + 4 * D + 2 * D * F + F + D + 2 * 2 * D, removable=False),
    # every JTM layer: self- and cross-attention, feed-forward, three LayerNorms
    Case("blocks-enc", "text_encoder", "blocks", L * (2 * (QKVO + 4 * D) + 2 * D * F + F + D + 3 * 2 * D),
         removable=False),
]  # fmt: skip


@dataclass
class Run:
    case: Case
    model: torch.nn.Module
    handle: Any
    base_out: torch.Tensor
    init_out: torch.Tensor
    before: dict[str, torch.Tensor]
    no_grad: set[str]
    trained_out: torch.Tensor


@pytest.fixture(scope="module", params=CASES, ids=[c.id for c in CASES])
def run(request, base, batch) -> Run:
    case = request.param
    torch.manual_seed(0)
    model = fresh(base)
    handle = apply_plan(model, only(case.tower, case.spec))
    init_out, before = logits(model, batch), snapshot(model)
    no_grad = train_steps(model, batch)
    return Run(case, model, handle, logits(base, batch), init_out, before, no_grad, logits(model, batch))


def test_identity_at_initialisation(run):
    if not run.case.identity:
        pytest.skip("prefixes change the function from the start")
    assert_close(run.init_out, run.base_out)


def test_exactly_its_own_parameters_train(run):
    trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
    applied = run.handle.applied[run.case.tower]
    added = set(run.handle.adapter_parameter_names())
    constants = {n for n in added if "ranknum" in n}  # AdaLoRA's rank bookkeeping: added, not trained
    intended = set(applied.params) if isinstance(applied, PartialApplied) else added - constants
    assert trainable == intended and trainable
    assert all(n.startswith(run.case.tower + ".") for n in trainable)
    assert not run.no_grad, f"no gradient reached {sorted(run.no_grad)}"
    changed = {n for n, p in run.model.named_parameters() if not torch.equal(p, run.before[n])}
    assert changed == trainable
    assert not torch.allclose(run.trained_out, run.init_out)


def test_trainable_count_has_its_closed_form(run, base):
    report = run.handle.trainable_report()
    added = sum(
        p.numel() for n, p in run.model.named_parameters() if n in set(run.handle.adapter_parameter_names())
    )
    base_total = count_parameters(base)["total"]
    assert report["total"] == base_total + added
    assert report["trainable"] == report["towers"][run.case.tower]["trainable"]
    if run.case.closed is not None:
        assert report["trainable"] == run.case.closed


def test_disabling_restores_the_base(run, batch):
    if not run.case.removable:
        assert not run.handle.restores_base
        pytest.skip("partial treatments train base weights in place")
    assert run.handle.restores_base
    with run.handle.disabled():
        assert_close(logits(run.model, batch), run.base_out)
    assert torch.equal(logits(run.model, batch), run.trained_out)


def test_merging_keeps_the_outputs(run, batch):
    merged = run.handle.merge()
    if not run.case.mergeable:
        assert merged == []
        return
    assert merged == [run.case.tower]
    try:
        assert_close(logits(run.model, batch), run.trained_out, atol=2e-5, rtol=1e-4)
    finally:
        run.handle.unmerge()
    assert_close(logits(run.model, batch), run.trained_out, atol=1e-5, rtol=1e-5)


def _loss_and_gradients(model, batch, bf16: bool):
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad for n, p in params.items()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_bf16_autocast_agrees_with_fp32(run, batch):
    """Under bf16 autocast (the default on CPUs with native bf16) the loss stays fp32 and within 1e-3 (relative)
    of the fp32 one; every trainable parameter gets a finite fp32 gradient, within 5 % (relative, over all
    trainable parameters) of the fp32 gradient."""
    run.model.eval()  # no dropout: the two passes see the same function
    loss32, grads32 = _loss_and_gradients(run.model, batch, bf16=False)
    loss16, grads16 = _loss_and_gradients(run.model, batch, bf16=True)
    assert loss16.dtype == torch.float32 and not torch.equal(
        loss16, loss32
    )  # autocast changed the arithmetic
    assert_close(loss16, loss32, rtol=1e-3, atol=0)
    missing = sorted(n for n, g in grads16.items() if g is None or not torch.isfinite(g).all())
    assert not missing, f"no finite bf16 gradient for {missing}"
    assert all(g.dtype == torch.float32 for g in grads16.values())  # fp32 master weights, fp32 gradients
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    # measured: relative error 0.004-0.018 over the cases; single tiny gradients (a key bias's, zero in exact
    # arithmetic) are rounding noise in both precisions, so the whole gradient is compared
    error = (flat16 - flat32).norm() / flat32.norm()
    assert error < 0.05, f"bf16 gradient differs from the fp32 one by {error:.3f} (relative)"


def test_adapter_only_checkpoint_round_trips(run, base, batch, tmp_path):
    save_tuned(run.handle, tmp_path)
    tower_dir = tmp_path / run.case.tower
    peft = (tower_dir / "adapter_config.json").is_file()
    assert peft == isinstance(run.handle.applied[run.case.tower], PeftApplied)
    assert {p.name for p in tmp_path.iterdir()} == {
        "plan.json",
        run.case.tower,
    }  # frozen towers write nothing
    model = fresh(base)
    handle = load_tuned(model, tmp_path)
    assert handle.plan == run.handle.plan
    assert torch.equal(logits(model, batch), run.trained_out)
    assert handle.trainable_report() == run.handle.trainable_report()
