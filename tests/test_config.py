"""Configs: YAML + overrides, typed validation, every problem reported at once with the key and the choices."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from torch import nn

from mile.config import (
    Config,
    ConfigError,
    config_leaves,
    dotted_layer,
    load_config,
    merge_config,
    parse_yaml,
    validate_config,
)
from mile.engine import inference
from mile.engine.rundir import RunDir
from mile.sweep import load_sweep
from mile.tuning import parse_plan_notation
from mile.tuning.base import TOWERS
from mile.tuning.treatment import resolve_treatment


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    file = tmp_path / "c.yaml"
    file.write_text(cfg.to_yaml())
    assert load_config(file) == cfg


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None, ["train.lr=1e-4", "train.epochs=3", "plan.vision=frozen", "data.eval_splits=[test, train]"]
    )
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 3 and cfg.plan.vision == "frozen"
    assert cfg.data.eval_splits == ["test", "train"]


def test_yaml_1_2_booleans_and_floats():
    assert parse_yaml("a: off\nb: no\nc: yes\nd: true\ne: 1e-4") == {
        "a": "off",
        "b": "no",
        "c": "yes",
        "d": True,
        "e": 1e-4,
    }
    assert load_config(None, ["train.feature_cache=none"]).train.feature_cache == "none"


def test_all_problems_are_reported_at_once_with_keys_and_choices(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  lr: fast\n  epohcs: 3\nmodel:\n  init: {kind: timm}\n  size: huge\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    text = str(err.value)
    assert "4 problem(s) in config" in text and str(file) in text
    assert "train.lr:" in text and "'fast'" in text
    assert "train.epohcs: unknown key; did you mean 'epochs'?" in text
    assert "model.init.kind:" in text and "'random'" in text and "'blip_hf'" in text
    assert "model.size:" in text and "valid sizes" in text


def test_extends_merges_a_base_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {lr: 0.001, epochs: 7}\nmodel: {size: tiny}\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\ntrain: {epochs: 2}\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.size) == (0.001, 2, "tiny")


def test_extends_cycle_and_bad_files_are_clear(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.lr"])


def test_yaml_tags_cannot_build_objects(tmp_path):
    file = tmp_path / "evil.yaml"
    file.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(file)


def test_config_schema_is_closed():
    assert Config.model_config["extra"] == "forbid"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=1e400", "train.lr"),  # YAML reads 1e400 as inf
        ("train.weight_decay=.inf", "train.weight_decay"),
        ("train.max_grad_norm=.nan", "train.max_grad_norm"),
        ("data.options={scale: -.inf}", "data.options.scale"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere_with_their_key(override, key):
    with pytest.raises(ConfigError, match=f"{key}: must be a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.batch_size=1e23", "train.batch_size"),
        ("train.seed=1e23", "train.seed"),
        ("train.seed=-1", "train.seed"),
        ("train.epochs=10000000", "train.epochs"),
        ("eval.num_beams=1000", "eval.num_beams"),
        ("model.image_size=100000", "model.image_size"),
        ("data.max_question_len=100000", "data.max_question_len"),
    ],
)
def test_absurd_counts_are_config_errors_not_tracebacks(override, key):
    with pytest.raises(ConfigError, match=f"{key}:"):
        load_config(None, [override])


def test_a_second_section_of_the_same_name_is_refused(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 0.001\n  epochs: 3\nmodel: {size: tiny}\ntrain:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'train' \(lines 1 and 5\)"):
        load_config(file)


# --- one merge rule (mile.config.merge_config) for extends, overrides, sweeps and eval-time overrides ---

BASE = {
    "model": {"size": "tiny"},
    "plan": {
        "vision": "frozen",
        "text_decoder": {"method": "lora", "r": 4},
        "extra_trainable": ["*.lm_head.*"],
    },
    "data": {"eval_splits": ["test", "train"], "limit": 5, "options": {"a": 1, "b": 2}},
    "train": {"lr": 0.001, "epochs": 3},
}


def plan_with(**towers) -> dict:
    """BASE's plan, validated, with some towers replaced."""
    return {**load_config(None, []).plan.model_dump(mode="json"), **BASE["plan"], **towers}


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_extends_replaces_a_tower_treatment_whole(tmp_path):
    write_yaml(tmp_path / "base.yaml", BASE)
    write_yaml(tmp_path / "top.yaml", {"extends": "base.yaml", "plan": {"text_decoder": {"method": "ia3"}}})
    cfg = load_config(tmp_path / "top.yaml")  # was: "unknown option 'r' for method 'ia3'"
    assert cfg.plan.text_decoder == resolve_treatment("ia3", "text_decoder")  # exactly ia3, its defaults
    assert (cfg.plan.vision, cfg.plan.extra_trainable) == ("frozen", ["*.lm_head.*"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.limit) == (0.001, 3, 5)  # unrelated keys kept


def test_plan_notation_on_the_command_line_sets_the_three_towers(tmp_path):
    cfg = load_config(write_yaml(tmp_path / "c.yaml", BASE), ["plan=T-T-LoRA_r8"])  # was: not a valid dict
    expected = parse_plan_notation("T-T-LoRA_r8")
    assert [cfg.plan.tower(t) for t in TOWERS] == [expected.tower(t) for t in TOWERS]
    assert cfg.plan.extra_trainable == ["*.lm_head.*"]  # the notation says nothing of it: the base's is kept
    assert load_config(None, ["plan=F-LoRA-LoRA r4"]).plan == parse_plan_notation("F-LoRA-LoRA r4")


def test_plan_notation_in_a_yaml_file(tmp_path):
    cfg = load_config(write_yaml(tmp_path / "c.yaml", {"plan": "F-IA3-IA3"}))
    assert cfg.plan == parse_plan_notation("F-IA3-IA3")
    write_yaml(tmp_path / "base.yaml", {"plan": "F-LoRA_r4-LoRA_r4"})
    write_yaml(tmp_path / "top.yaml", {"extends": "base.yaml", "plan": {"text_decoder": "ia3"}})
    cfg = load_config(tmp_path / "top.yaml")  # a base in notation merges tower by tower
    assert cfg.plan.notation() == "F-LoRA_r4-IA3"


def test_later_layers_edit_a_plan_given_in_notation(tmp_path):
    cfg = load_config(None, ["plan=F-LoRA-LoRA", "plan.text_decoder.r=16", "plan.text_decoder.alpha=8"])
    assert cfg.plan.text_decoder.options["r"] == 16 and cfg.plan.text_decoder.options["lora_alpha"] == 8
    assert cfg.plan.text_encoder == parse_plan_notation("F-LoRA-LoRA").text_encoder


def test_options_without_a_method_edit_the_treatment_and_a_method_replaces_it(tmp_path):
    file = write_yaml(tmp_path / "c.yaml", BASE)
    edited = load_config(file, ["plan.text_decoder.dropout=0.2"]).plan.text_decoder
    assert (edited.method, edited.options["r"], edited.options["lora_dropout"]) == ("lora", 4, 0.2)
    again = load_config(file, ["plan.text_decoder={method: lora, dropout: 0.2}"]).plan.text_decoder
    assert again.options["r"] == resolve_treatment("lora", "text_decoder").options["r"]  # r 4 went with it
    with pytest.raises(ConfigError, match="text_decoder.method: missing"):  # no method to edit on `full`
        load_config(None, ["plan.text_decoder.r=8"])


def test_lists_are_replaced_not_appended(tmp_path):
    file = write_yaml(tmp_path / "c.yaml", BASE)
    cfg = load_config(file, ["data.eval_splits=[validate]", "plan.extra_trainable=[x.*]"])
    assert cfg.data.eval_splits == ["validate"] and cfg.plan.extra_trainable == ["x.*"]
    write_yaml(tmp_path / "top.yaml", {"extends": "c.yaml", "data": {"eval_splits": ["validate"]}})
    assert load_config(tmp_path / "top.yaml").data.eval_splits == ["validate"]


def test_bad_notation_is_reported_with_the_other_problems(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["plan=T-T-LoRAA", "train.lr=fast"])
    assert "2 problem(s)" in str(err.value) and "plan:" in str(err.value) and "'LoRAA'" in str(err.value)
    write_yaml(tmp_path / "base.yaml", {"plan": "F-F-LoRAA"})  # not lost under a layer that edits it
    write_yaml(tmp_path / "top.yaml", {"extends": "base.yaml", "plan": {"text_decoder": "ia3"}})
    with pytest.raises(ConfigError, match="'LoRAA'"):
        load_config(tmp_path / "top.yaml")


def test_merge_config_keeps_its_inputs_and_unrelated_keys():
    base, top = copy.deepcopy(BASE), {"data": {"limit": 2}, "eval": {"num_beams": 1}}
    out = merge_config(base, top)
    assert out["data"] == {**BASE["data"], "limit": 2} and out["eval"] == {"num_beams": 1}
    assert (
        out["train"] == BASE["train"]
        and base == BASE
        and top == {"data": {"limit": 2}, "eval": {"num_beams": 1}}
    )
    out["data"]["eval_splits"].append("x")
    assert base == BASE  # no shared lists


# Each path takes (base mapping, dotted key, value, tmp_path, monkeypatch) and gives the resolved Config.


def through_extends(base, key, value, tmp_path, _):
    write_yaml(tmp_path / "base.yaml", base)
    return load_config(
        write_yaml(tmp_path / "top.yaml", {"extends": "base.yaml", **dotted_layer(key, value)})
    )


def through_override(base, key, value, tmp_path, _):
    return load_config(write_yaml(tmp_path / "base.yaml", base), [f"{key}={json.dumps(value)}"])


def through_sweep(where):
    def path(base, key, value, tmp_path, _):
        write_yaml(tmp_path / "base.yaml", base)
        spec = {"grid": {key: [value]}} if where == "grid" else {"runs": [{key: value}]}
        sweep = write_yaml(
            tmp_path / "s.yaml", {"base": "base.yaml", "output_dir": str(tmp_path / "o"), **spec}
        )
        return load_sweep(sweep).runs[0].config

    return path


def through_eval(base, key, value, tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.weights.mkdir(parents=True)
    (run / "config.yaml").write_text(validate_config(base).to_yaml())
    seen = []
    monkeypatch.setattr(
        inference,
        "build_session",
        lambda cfg: seen.append(cfg) or SimpleNamespace(tuning=None, model=nn.Identity()),
    )
    monkeypatch.setattr(inference, "load_weights", lambda *_: None)
    inference.load_trained(run, dotted_layer(key, value))
    return seen[0]


PATHS = {
    "extends": through_extends,
    "override": through_override,
    "sweep grid": through_sweep("grid"),
    "sweep runs": through_sweep("runs"),
    "eval-time": through_eval,
}
EDITS = {
    "method": ("plan.text_decoder", {"method": "ia3"}, {"plan": plan_with(text_decoder="ia3")}),
    "by name": ("plan.text_decoder", "prefix", {"plan": plan_with(text_decoder="prefix")}),
    "option": ("plan.text_decoder.r", 8, {"plan": plan_with(text_decoder={"method": "lora", "r": 8})}),
    "notation": (
        "plan",
        "T-T-LoRA_r8",
        {"plan": {**parse_plan_notation("T-T-LoRA_r8").model_dump(), "extra_trainable": ["*.lm_head.*"]}},
    ),
    "list": ("data.eval_splits", ["validate"], {"data": {**BASE["data"], "eval_splits": ["validate"]}}),
    "section": ("data", {"options": {"b": 3}}, {"data": {**BASE["data"], "options": {"a": 1, "b": 3}}}),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("path", PATHS)
def test_every_path_resolves_an_edit_the_same_way(path, edit, tmp_path, monkeypatch):
    key, value, changed = EDITS[edit]
    cfg = PATHS[path](BASE, key, value, tmp_path, monkeypatch)
    assert config_leaves(cfg) == config_leaves(validate_config({**BASE, **changed}))


def test_config_files_read_environment_variables_with_defaults(tmp_path, monkeypatch):
    file = tmp_path / "c.yaml"
    file.write_text(
        "data: {root: '${MILE_TEST_ROOT:-../shared}/data/slake', options: {x: ['${MILE_TEST_X}']}}\n"
    )
    monkeypatch.delenv("MILE_TEST_ROOT", raising=False)
    monkeypatch.setenv("MILE_TEST_X", "set")
    cfg = load_config(file)
    assert cfg.data.root == "../shared/data/slake" and cfg.data.options == {"x": ["set"]}
    monkeypatch.setenv("MILE_TEST_ROOT", "/elsewhere")
    assert load_config(file).data.root == "/elsewhere/data/slake"
    monkeypatch.delenv("MILE_TEST_X")
    with pytest.raises(ConfigError, match=r"data.options.x\[0\] uses \$\{MILE_TEST_X\}, which is not set"):
        load_config(file)


def test_shipped_real_data_configs_follow_mile_shared(monkeypatch):
    monkeypatch.setenv("MILE_SHARED", "/mnt/somewhere")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "slake" / "mile-small.yaml")
    assert cfg.data.root == "/mnt/somewhere/data/slake"
    assert cfg.model.init.vision == "/mnt/somewhere/weights/dinov2-small"
