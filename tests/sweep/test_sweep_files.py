"""configs/sweeps: the grids of the paper's Tables 1-4 at paper scale and at mile-small scale."""

from pathlib import Path

import pytest
import yaml

from mile.config import config_leaves, load_config
from mile.sweep import load_sweep
from mile.tuning import PlanConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = {p.stem.replace("_", " "): p for p in (CONFIGS / "paper").glob("*.yaml")}  # "T-T-LoRA r8" -> file
SCALES = ("paper", "mile-small")


def sweeps(scale: str) -> list[Path]:
    return sorted(p for p in (CONFIGS / "sweeps" / scale).glob("*.yaml") if p.name != "base.yaml")


def table_sweeps(scale: str) -> list[Path]:
    """The per-table grids; study*.yaml are the CPU study: a cross-section of them plus the trained baselines."""
    return [p for p in sweeps(scale) if not p.name.startswith("study")]


def differing_leaves(a, b) -> set[str]:
    """The dotted config keys whose values differ between two configs."""
    a, b = config_leaves(a), config_leaves(b)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.mark.parametrize("scale", SCALES)
def test_every_row_of_the_tables_once_with_the_presets_plan(scale):
    presets = {
        row: PlanConfig.model_validate(yaml.safe_load(p.read_text())["plan"]) for row, p in PRESETS.items()
    }
    covered = []
    for path in table_sweeps(scale):
        for run in load_sweep(path).runs:
            rows = [row for row, plan in presets.items() if plan == run.config.plan]
            assert len(rows) == 1, f"{path.name} run {run.index}: {run.plan} is not exactly one preset"
            covered += rows
    assert sorted(covered) == sorted(PRESETS) and len(PRESETS) == 23  # each row once


def test_paper_scale_is_blip_base_480_from_the_hub_checkpoint_on_slake():
    for path in sweeps("paper"):
        sweep = load_sweep(path)
        assert sweep.output_dir == Path("runs/paper-slake") / path.stem
        for run in sweep.runs:
            m, d = run.config.model, run.config.data
            assert (m.size, m.image_size, m.init.kind, m.init.path) == (
                "blip-base",
                480,
                "blip_hf",
                "Salesforce/blip-vqa-base",
            )
            assert (d.dataset, d.language) == ("slake", "en")


def test_mile_small_scale_is_the_slake_recipe_from_the_study_base():
    base = load_config(CONFIGS / "sweeps" / "mile-small" / "base.yaml")
    assert (base.model.init.kind, str(base.model.init.path)) == ("mile", "runs/study/base-export")
    for path in sweeps("mile-small"):
        for run in load_sweep(path).runs:
            cfg = run.config
            assert (cfg.model.size, cfg.model.image_size, cfg.train.epochs) == ("mile-small", 224, 10)
            assert (cfg.eval.inference, cfg.train.mixed_precision) == ("rank", "auto")
            assert cfg.model.init == base.model.init and cfg.data.dataset == "slake"


STUDY = CONFIGS / "sweeps" / "mile-small" / "study.yaml"


def test_the_cpu_study_is_a_cross_section_of_the_presets_plus_baselines_and_partial_tuning():
    presets = [PlanConfig.model_validate(yaml.safe_load(p.read_text())["plan"]) for p in PRESETS.values()]
    runs = load_sweep(STUDY).runs
    extra = {"T-T-T", "F-T-T", "F-LN-LN", "F-Attn-Attn", "F-FFN-FFN"}  # baselines; the LayerNorm paper's rows
    assert extra <= {run.plan for run in runs} and len({run.name for run in runs}) == len(runs)
    for run in runs:
        assert run.plan in extra or run.config.plan in presets, run.plan


def test_the_study_f_t_t_runs_are_the_plain_models_of_instruction_workflow_b():
    # scripts/cpu_study.sh exports F-T-T of seed N as the converged model of (b) and keeps it as plain-sN
    runs = [r for r in load_sweep(STUDY).runs if r.plan == "F-T-T"]
    assert sorted(r.config.train.seed for r in runs) == [1, 2, 3]
    for run in runs:
        plain = load_config(CONFIGS / "instruct" / "plain.yaml", [f"train.seed={run.config.train.seed}"])
        assert differing_leaves(plain, run.config) == set(), run.name


def test_every_plan_of_the_study_has_two_seeds_and_its_seeds_differ_only_in_the_seed():
    # so that `mile report` pools them into mean ± std
    by_plan: dict[str, list] = {}
    for run in load_sweep(STUDY).runs:
        by_plan.setdefault(run.plan, []).append(run)
    for plan, runs in by_plan.items():
        assert {1, 2} <= {r.config.train.seed for r in runs}, plan
        for run in runs[1:]:
            assert differing_leaves(runs[0].config, run.config) == {"train.seed"}, run.name
