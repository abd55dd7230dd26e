"""Sweep files: expansion order, merging rules, names, and errors that name the sweep file and the key."""

import re

import pytest
import yaml

from mile.config import ConfigError
from mile.sweep import SweepError, load_sweep
from mile.sweep.naming import format_value, run_name, safe
from mile.tuning import parse_plan_notation
from mile.tuning.base import TOWERS
from mile.tuning.treatment import resolve_treatment

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


def test_grid_is_a_product_in_order_then_explicit_runs(make_sweep):
    path = make_sweep(
        {
            "grid": {"plan": ["F-LoRA_r4-LoRA_r4", "T-T-T"], "train.lr": [1e-4, 5e-5], "train.seed": [1, 2]},
            "runs": [{"plan": "F-F-Prefix", "train.lr": 2e-5}],
        }
    )
    sweep = load_sweep(path)
    got = [(r.plan, r.config.train.lr, r.config.train.seed, r.origin) for r in sweep.runs]
    assert got[:4] == [
        ("F-LoRA_r4-LoRA_r4", 1e-4, 1, "grid"),
        ("F-LoRA_r4-LoRA_r4", 1e-4, 2, "grid"),
        ("F-LoRA_r4-LoRA_r4", 5e-5, 1, "grid"),
        ("F-LoRA_r4-LoRA_r4", 5e-5, 2, "grid"),
    ]
    assert [g[0] for g in got[4:8]] == ["T-T-T"] * 4
    assert got[8] == ("F-F-Prefix", 2e-5, 42, "runs[0]")  # an explicit run is not crossed with the grid
    assert [r.index for r in sweep.runs] == list(range(1, 10))
    assert sweep.output_dir == path.parent / "out"


def test_names_are_deterministic_unique_safe_and_show_only_what_varies(make_sweep):
    spec = {
        "overrides": {"train.epochs": 2},
        "grid": {"plan": ["T-T-LoRA_r4", "F-IA3-IA3"], "train.lr": [1e-4, 5e-5]},
    }
    first, again = load_sweep(make_sweep(spec)), load_sweep(make_sweep(spec))
    names = [r.name for r in first.runs]
    assert names == [r.name for r in again.runs]
    assert len(set(names)) == len(names)
    assert all(SAFE.match(n) and len(n) < 120 for n in names)
    assert names[0].startswith("T-T-LoRA_r4-lr1e-4-") and names[1].startswith("T-T-LoRA_r4-lr5e-5-")
    assert not any("e2" in n.split("-")[:-1] for n in names)  # epochs is the same everywhere: not in names
    assert first.runs[0].values == {"train.lr": 1e-4}
    assert re.fullmatch(r"[0-9a-f]{8}", names[0].rsplit("-", 1)[1])


def test_the_hash_follows_every_config_value(make_sweep):
    sweep = load_sweep(make_sweep({"grid": {"plan": ["T-T-T"]}}))
    cfg = sweep.runs[0].config
    other = cfg.model_copy(deep=True)
    other.eval.num_beams = 2
    assert run_name(cfg, []) != run_name(other, [])
    moved = cfg.model_copy(deep=True)
    moved.run.output_dir = "elsewhere"  # where a run lives is not what it is
    assert run_name(cfg, []) == run_name(moved, [])


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-4, "1e-4"), (5e-5, "5e-5"), (2.5e-5, "2.5e-5"), (0.1, "0.1"), (3, "3"), (True, "on"), (None, "none"),
     ("../shared/data/slake", "slake"), ([1, 2], "1+2")],
)  # fmt: skip
def test_value_tokens(value, text):
    assert format_value(value) == text


def test_safe_names():
    assert safe("a/b c:d") == "a_b_c_d" and safe("..x") == "x" and safe("-rf") == "rf" and safe("") == "_"


def test_mapping_values_merge_but_tower_treatments_are_replaced(make_sweep, tmp_path):
    path = make_sweep(
        {
            "overrides": {"plan.text_decoder": {"method": "lora", "r": 4}},
            "grid": {"data": [{"limit": 4}, {"limit": 6, "augment": True}]},
            "runs": [{"plan.text_decoder": {"method": "ia3"}}],
        }
    )
    a, b, c = load_sweep(path).runs
    assert (a.config.data.dataset, a.config.data.limit, a.config.data.augment) == ("demo", 4, False)
    assert (b.config.data.limit, b.config.data.augment) == (6, True)
    assert a.config.plan.text_decoder.method == "lora" and a.config.plan.vision == "full"
    assert c.config.plan.text_decoder.method == "ia3"  # no stale lora keys merged in: replaced whole


def test_a_grid_over_plan_notation_sets_the_towers_and_keeps_extra_trainable(make_sweep):
    plan = {"text_decoder": {"method": "lora", "r": 4}, "extra_trainable": ["*.lm_head.*"]}
    base = {"extends": "base.yaml", "plan": plan}  # make_sweep's base.yaml
    runs = load_sweep(make_sweep({"base": base, "grid": {"plan": ["T-T-LoRA_r8", "F-IA3-IA3"]}})).runs
    for run, notation in zip(runs, ["T-T-LoRA_r8", "F-IA3-IA3"], strict=True):
        expected = parse_plan_notation(notation)
        assert [run.config.plan.tower(t) for t in TOWERS] == [expected.tower(t) for t in TOWERS]
        assert run.config.plan.extra_trainable == ["*.lm_head.*"]  # the notation does not speak of it


def test_a_grid_over_tower_mappings_replaces_or_edits_the_treatment(make_sweep):
    base = {"extends": "base.yaml", "plan": {"text_decoder": {"method": "lora", "r": 4, "dropout": 0.2}}}
    values = [{"method": "ia3"}, {"method": "lora", "r": 8}, "frozen", {"r": 16}]
    runs = load_sweep(make_sweep({"base": base, "grid": {"plan.text_decoder": values}})).runs
    decoders = [run.config.plan.text_decoder for run in runs]
    assert decoders[0] == resolve_treatment("ia3", "text_decoder")  # was: unknown option 'r' for 'ia3'
    assert decoders[1] == resolve_treatment({"method": "lora", "r": 8}, "text_decoder")  # dropout reset
    assert decoders[2] == "frozen"
    assert (decoders[3].options["r"], decoders[3].options["lora_dropout"]) == (
        16,
        0.2,
    )  # options only: an edit
    grid = load_sweep(make_sweep({"base": base, "grid": {"plan.text_decoder.r": [2, 4]}})).runs
    assert [run.config.plan.text_decoder.options["r"] for run in grid] == [2, 4]


def test_notation_and_plan_mappings_give_the_same_plan(make_sweep):
    full = parse_plan_notation("F-T-LoRA r4").model_dump(mode="json")
    path = make_sweep({"runs": [{"plan": "F-T-LoRA r4", "train.seed": 1}, {"plan": full, "train.seed": 2}]})
    a, b = load_sweep(path).runs
    assert a.config.plan == b.config.plan and a.plan == "F-T-LoRA_r4"


def test_inline_base_with_extends_and_output_dir_defaults(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "b.yaml").write_text(
        yaml.safe_dump({"model": {"size": "tiny"}, "train": {"lr": 0.5}})
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {"base": {"extends": "cfg/b.yaml", "train": {"epochs": 3}}, "grid": {"plan": ["T-T-T"]}}
        )
    )
    sweep = load_sweep(path)
    cfg = sweep.runs[0].config
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.size) == (0.5, 3, "tiny")
    assert str(sweep.output_dir) == "runs/s"  # the base's run.output_dir / the sweep file's stem
    assert load_sweep(path, tmp_path / "x").output_dir == tmp_path / "x"
    assert cfg.run.output_dir == "runs/s" and cfg.run.name == sweep.runs[0].name


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"gird": {"plan": ["T-T-T"]}}, ["unknown key 'gird'", "did you mean 'grid'"]),
        ({"train": {"lr": 1}, "grid": {"plan": ["T-T-T"]}}, ["looks like a run config"]),
        ({"grid": {"train.lr": 1e-4}}, ["grid.train.lr must be a non-empty list", "overrides"]),
        ({"grid": {}}, ["needs a non-empty `grid` and/or `runs`"]),
        ({"grid": {"plan": ["T-T-LoRAA"]}}, ["grid.plan", "unknown notation token 'LoRAA'"]),
        ({"grid": {"run.name": ["a", "b"]}}, ["grid.run.name", "set by the sweep"]),
        ({"runs": ["T-T-T"]}, ["runs[0] must be a mapping"]),
        ({"base": "nope.yaml", "grid": {"plan": ["T-T-T"]}}, ["base config 'nope.yaml' not found"]),
        (
            {"runs": [{"plan": "T-T-T"}, {"plan": "T-T-T"}]},
            ["runs 1 (runs[0]) and 2 (runs[1])", "same config"],
        ),
    ],
)
def test_sweep_file_errors_name_the_file_and_the_key(make_sweep, spec, words):
    path = make_sweep(spec)
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_a_bad_config_key_in_a_grid_names_the_sweep_run_and_the_key(make_sweep):
    path = make_sweep({"grid": {"plan": ["T-T-T"], "train.lrr": [1e-4, 2e-4]}})
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    text = str(err.value)
    assert str(path) in text and "run 1 (grid: plan=T-T-T, train.lrr=0.0001)" in text
    assert "train.lrr: unknown key" in text and "did you mean 'lr'" in text
