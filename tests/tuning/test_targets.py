"""Target patterns: globs, regexes, types, excludes, the layer filter, and errors that list close names."""

from __future__ import annotations

import sys

import pytest
from tuning_helpers import TOWERS, fresh, only

from mile.tuning import (
    PlanError,
    adapters,
    apply_plan,
    handle,
    partial,
    peft_method,
    plan_targets,
    prefix,
    ptv2,
    targets,
)
from mile.tuning.targets import close_names, select_modules, select_parameters


def _sel(base, tower, targets, **kw):
    return select_modules(base.get_submodule(tower), tower, targets, **kw)


def test_glob_regex_and_type_patterns(base):
    glob = _sel(base, "text_decoder", ["*.self_attn.q"])
    assert glob == ["text_decoder.layers.0.self_attn.q", "text_decoder.layers.1.self_attn.q"]
    assert _sel(base, "text_decoder", ["layers.*.self_attn.q"]) == glob  # names inside the tower work too
    assert _sel(base, "text_decoder", [r"re:text_decoder\.layers\.\d+\.self_attn\.q"]) == glob
    assert _sel(base, "text_decoder", [r"re:layers\.\d\.self_attn\.[q]"]) == glob
    norms = _sel(base, "vision", ["type:LayerNorm"])
    assert norms == ["vision.blocks.0.norm1", "vision.blocks.0.norm2", "vision.blocks.1.norm1",
                     "vision.blocks.1.norm2", "vision.norm"]  # fmt: skip
    assert _sel(base, "vision", ["type:Attention"]) == ["vision.blocks.0.attn", "vision.blocks.1.attn"]


def test_exclude_and_layer_filter(base):
    hit = _sel(base, "text_encoder", ["*_attn.q", "*_attn.v"], exclude=["*.cross_attn.*"], layers=[-1])
    assert hit == ["text_encoder.layers.1.self_attn.q", "text_encoder.layers.1.self_attn.v"]
    # modules outside the blocks (the patch embedding) fall out under a layer filter
    assert _sel(base, "vision", ["patch_embed", "*.mlp.fc1"], layers=[0]) == ["vision.blocks.0.mlp.fc1"]
    with pytest.raises(
        PlanError, match=r"vision\.layers: layer 2 is out of range; this tower has layers 0\.\.1"
    ):
        _sel(base, "vision", ["*.attn.q"], layers=[2])
    with pytest.raises(PlanError, match="leave none"):
        _sel(base, "vision", ["*.attn.q"], exclude=["*.q"])


def test_a_pattern_matching_nothing_lists_close_names(base):
    with pytest.raises(PlanError) as err:
        _sel(base, "text_decoder", ["*.self_attn.q", "*.self_atn.v"], key="text_decoder")
    message = str(err.value)
    assert "text_decoder.targets: pattern '*.self_atn.v' matches no module of text_decoder" in message
    assert "'*.self_attn.v'" in message  # the close name
    with pytest.raises(PlanError, match=r"close classes: \['LayerNorm'\]"):
        _sel(base, "vision", ["type:LayerNrom"])
    with pytest.raises(PlanError, match=r"exclude: pattern 'nope' matches no module"):
        _sel(base, "vision", ["*.attn.q"], exclude=["nope"])
    assert "*.mlp.fc2" in close_names("*.mlp.fc3", ["vision.blocks.0.mlp.fc2"])


def test_plan_errors_from_patterns_name_the_tower_key(base):
    with pytest.raises(PlanError, match=r"text_encoder\.targets: pattern '\*\.qq' matches no module"):
        apply_plan(fresh(base), only("text_encoder", {"method": "lora", "targets": ["*.qq"]}))
    with pytest.raises(PlanError, match=r"extra_trainable: pattern 'text_decoder\.lm_haed\.\*' matches no"):
        apply_plan(fresh(base), {"extra_trainable": ["text_decoder.lm_haed.*"]})


def test_parameter_patterns(base):
    assert select_parameters(base, ["text_decoder.lm_head.*"], "x") == [
        "text_decoder.lm_head.bias", "text_decoder.lm_head.dense.weight", "text_decoder.lm_head.dense.bias",
        "text_decoder.lm_head.norm.weight", "text_decoder.lm_head.norm.bias",
    ]  # fmt: skip
    assert select_parameters(base, [r"re:vision\.(cls_token|pos_embed)"], "x") == [
        "vision.cls_token",
        "vision.pos_embed",
    ]


def test_plan_targets_reports_without_touching_the_model(base):
    before = [n for n, _ in base.named_modules()]
    report = plan_targets(base, "LoRA-IA3-F")
    assert [n for n, _ in base.named_modules()] == before
    assert report["text_decoder"] == {"treatment": "frozen", "modules": []}
    assert report["vision"]["treatment"] == "lora" and "vision.patch_embed" in report["vision"]["modules"]
    ia3 = report["text_encoder"]
    assert len(ia3["modules"]) == 2 * 7 and len(ia3["feedforward"]) == 2 * 3
    assert all(n.endswith((".o", ".fc2")) for n in ia3["feedforward"])
    assert report["extra_trainable"] == []


ONE_OF_EACH = [  # every kind of method, IA3's feed-forward patterns included
    {"vision": "bitfit", "text_encoder": "prefix", "text_decoder": "ia3"},
    {"vision": "houlsby", "text_encoder": "full", "text_decoder": "lora", "extra_trainable": ["*.lm_head.*"]},
]


@pytest.mark.parametrize("plan", ONE_OF_EACH)
def test_apply_plan_resolves_each_tower_once_and_no_method_resolves(base, plan, monkeypatch):
    """Methods read what their patterns hit from the call; none matches patterns itself (not even through an
    import by name, which the monkeypatching below would not see)."""
    for module in (adapters, partial, peft_method, prefix, ptv2):
        assert not {"select_modules", "select_parameters", "resolve"} & vars(module).keys(), module.__name__
    resolved, selected = [], []
    real_resolve, real_select = handle.resolve, targets.select_modules

    def counting_resolve(model, call, info):
        resolved.append(call.tower)
        return real_resolve(model, call, info)

    def counting_select(tower, tower_name, *args, **kwargs):
        selected.append(sys._getframe(1).f_globals["__name__"])  # the calling module
        return real_select(tower, tower_name, *args, **kwargs)

    monkeypatch.setattr(handle, "resolve", counting_resolve)
    monkeypatch.setattr(targets, "select_modules", counting_select)
    tuned = apply_plan(fresh(base), plan)
    methods = [t for t in TOWERS if isinstance(plan.get(t), str) and plan[t] not in ("full", "frozen")]
    assert resolved == methods
    assert selected and set(selected) == {"mile.tuning.targets"}  # only inside resolve
    report = plan_targets(base, plan)
    assert tuned.targets() == {t: report[t]["modules"] for t in methods}
