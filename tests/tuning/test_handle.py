"""The handle: whole-tower treatments, extra trainable parameters, accounting, checkpoints, unloading."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from torch.testing import assert_close
from tuning_helpers import fresh, logits, only, train_steps

from mile.tuning import PlanError, apply_plan, count_parameters, load_tuned, read_plan
from mile.tuning.base import Applied, MethodCall
from mile.tuning.handle import already_tuned
from mile.tuning.io import load_weights, save_tuned


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_and_frozen_towers(base):
    model = fresh(base)
    report = apply_plan(model, "T-F-F").trainable_report()
    assert report["trainable"] == report["towers"]["vision"]["trainable"] == _numel(base.vision)
    assert report["towers"]["text_decoder"] == {"params": _numel(base.text_decoder), "trainable": 0}
    assert report["total"] == _numel(base)
    assert report["trainable_pct"] == pytest.approx(100 * _numel(base.vision) / _numel(base))


def test_tied_parameters_count_once():
    from mile.model.config import size_config
    from mile.model.mile import MileModel

    with torch.device("meta"):
        model = MileModel(size_config("blip-base", 480))
    counts = count_parameters(model)
    assert counts["total"] == 361_478_972  # the LM head reuses the decoder's word embeddings
    assert counts["towers"]["text_decoder"]["params"] == 137_881_148


def test_parameters_outside_the_towers_count_as_other_and_an_empty_model_is_zero(base):
    model = fresh(base)
    model.probe_head = torch.nn.Linear(3, 2)  # 8 parameters that belong to no tower, trained
    model.probe_head.bias.requires_grad_(False)
    counts = count_parameters(model)
    assert list(counts["towers"]) == ["vision", "text_encoder", "text_decoder", "other"]
    assert counts["towers"]["other"] == {"params": 8, "trainable": 6}
    assert counts["total"] == _numel(base) + 8 and counts["trainable"] == _numel(base) + 6
    assert count_parameters(torch.nn.Module()) == {
        "towers": {},
        "total": 0,
        "trainable": 0,
        "trainable_pct": 0.0,
    }


def test_extra_trainable_parameters_train_and_save_beside_the_adapter(base, batch, tmp_path):
    model = fresh(base)
    plan = {
        **only("text_decoder", "lora"),
        "extra_trainable": ["text_decoder.lm_head.*", "*.layers.0.self_attn.q.bias"],
    }
    handle = apply_plan(model, plan)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "text_decoder.lm_head.dense.weight" in trainable
    assert "text_decoder.layers.0.self_attn.q.base_layer.bias" in trainable  # renamed by peft, still trained
    assert not handle.restores_base
    train_steps(model, batch, steps=2)
    save_tuned(handle, tmp_path)
    own = json.loads((tmp_path / "plan.json").read_text())
    assert own["notation"] == "F-F-LoRA+extra"
    assert (tmp_path / "text_decoder" / "trainable.safetensors").is_file()
    restored = fresh(base)
    load_tuned(restored, tmp_path)
    assert torch.equal(logits(restored, batch), logits(model, batch))


def test_a_model_is_tuned_once(base):
    model = fresh(base)
    apply_plan(model, "F-F-LoRA")
    with pytest.raises(PlanError, match="already carries tuning methods"):
        apply_plan(model, "F-F-IA3")


def test_a_failing_plan_leaves_the_model_untouched(base):
    model = fresh(base)
    names = [n for n, _ in model.named_parameters()]
    with pytest.raises(PlanError, match="text_decoder.targets"):
        apply_plan(
            model,
            {"vision": "lora", "text_encoder": "ptv2", "text_decoder": {"method": "ia3", "targets": ["x"]}},
        )
    assert [n for n, _ in model.named_parameters()] == names
    assert all(p.requires_grad for p in model.parameters())
    apply_plan(model, "LoRA-PTV2-IA3")  # and can still be tuned


def test_unload_restores_the_base_model_or_keeps_merged_weights(base, batch):
    plan = {"vision": "houlsby", "text_encoder": "prefix", "text_decoder": "lora"}
    model = fresh(base)
    handle = apply_plan(model, plan)
    train_steps(model, batch, steps=2)
    handle.unload()
    assert base.state_dict().keys() == model.state_dict().keys()
    assert_close(logits(model, batch), logits(base, batch))
    assert apply_plan(model, "F-F-IA3")  # free to take another plan

    model = fresh(base)
    handle = apply_plan(model, "F-F-LoRA")
    train_steps(model, batch, steps=2)
    tuned = logits(model, batch)
    handle.unload(merge=True)
    assert base.state_dict().keys() == model.state_dict().keys()
    assert_close(logits(model, batch), tuned, atol=2e-5, rtol=1e-4)


def test_merge_skips_methods_that_cannot_merge(base, batch):
    model = fresh(base)
    handle = apply_plan(model, "F-Prefix-LoRA")
    train_steps(model, batch, steps=2)
    before = logits(model, batch)
    assert handle.merge() == ["text_decoder"]
    assert_close(logits(model, batch), before, atol=2e-5, rtol=1e-4)
    assert handle.merge() == []  # already merged


def test_saving_while_merged_saves_the_unmerged_weights(base, batch, tmp_path):
    model = fresh(base)
    handle = apply_plan(model, "F-F-LoRA")
    train_steps(model, batch, steps=2)
    handle.merge()
    save_tuned(handle, tmp_path)
    restored = fresh(base)
    load_tuned(restored, tmp_path)
    assert_close(logits(restored, batch), logits(model, batch), atol=2e-5, rtol=1e-4)


def test_loading_checks_the_plan_and_the_files(base, tmp_path):
    model = fresh(base)
    save_tuned(apply_plan(model, "F-F-LoRA"), tmp_path)
    assert read_plan(tmp_path).notation() == "F-F-LoRA"
    other = apply_plan(fresh(base), "F-F-LoRA_r4")
    with pytest.raises(
        PlanError,
        match="saved with plan F-F-LoRA, not this model's F-F-LoRA_r4 \\(text_decoder.r: saved 8, here 4\\)",
    ):
        load_weights(other, tmp_path)
    (tmp_path / "text_decoder" / "adapter_model.safetensors").unlink()
    with pytest.raises(PlanError, match="adapter_model.safetensors is missing"):
        load_tuned(fresh(base), tmp_path)
    with pytest.raises(PlanError, match="not a tuning checkpoint"):
        load_tuned(fresh(base), tmp_path / "text_decoder")


def test_a_saved_peft_tower_also_loads_with_peft(base, batch, tmp_path):
    model = fresh(base)
    handle = apply_plan(model, "F-F-LoRA")
    train_steps(model, batch, steps=2)
    save_tuned(handle, tmp_path)
    plain = fresh(base)
    peft_model = PeftModel.from_pretrained(plain.text_decoder, str(tmp_path / "text_decoder"))
    plain.text_decoder = peft_model.base_model.model  # the same tower, LoRA layers injected by peft
    assert_close(logits(plain, batch), logits(model, batch))


def test_adalora_budget_and_regulariser(base, batch):
    model = fresh(base)
    handle = apply_plan(model, only("text_decoder", {"method": "adalora", "total_step": 6, "tinit": 1, "tfinal": 1,
                                                     "deltaT": 1}))  # fmt: skip
    reg = handle.regularization_loss()
    assert reg is not None and reg.item() > 0 and reg.requires_grad
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(6):
        loss = model(**batch).loss + handle.regularization_loss()
        loss.backward()
        opt.step()
        handle.on_step(step)
        opt.zero_grad()
    assert handle.applied["text_decoder"].config.rank_pattern  # the budget was allocated
    assert apply_plan(fresh(base), "F-F-LoRA").regularization_loss() is None


def test_load_tuned_leaves_the_model_in_the_mode_it_was_in(base, tmp_path):
    save_tuned(apply_plan(fresh(base), "F-F-LoRA"), tmp_path)
    for training in (False, True):
        reference = apply_plan(fresh(base), "F-F-LoRA").model.train(training)  # what the mode switch gives
        model = fresh(base).train(training)
        load_tuned(model, tmp_path)  # peft injects its layers in training mode
        assert [m.training for m in model.modules()] == [m.training for m in reference.modules()]
    assert not any(m.training for m in model.train(False).modules())


def test_methods_without_training_hooks_get_no_op_defaults(base):
    """The handle calls on_step / regularization_loss on every method; only AdaLoRA overrides them."""
    bare = Applied(MethodCall("x", "vision", ("*",)))
    assert bare.on_step(0) is None and bare.regularization_loss() is None
    handle = apply_plan(
        fresh(base), {"vision": "houlsby", "text_encoder": "prefix", "text_decoder": "bitfit"}
    )
    for applied in handle.applied.values():
        assert type(applied).on_step is Applied.on_step
        assert type(applied).regularization_loss is Applied.regularization_loss
    handle.on_step(1)
    assert handle.regularization_loss() is None


def test_a_failing_adapter_target_adds_no_adapter(base):
    model = fresh(base)
    names = [n for n, _ in model.named_modules()]
    with pytest.raises(PlanError, match=r"layers\.0\.mlp\.act is a GELU"):
        apply_plan(model, only("text_decoder", {"method": "houlsby", "targets": ["*.mlp", "*.mlp.act"]}))
    assert [n for n, _ in model.named_modules()] == names and not already_tuned(model)
