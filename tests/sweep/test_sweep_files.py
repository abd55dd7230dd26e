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


def test_mile_small_scale_is_cpu_sized_and_starts_from_the_placeholder_base():
    base = load_config(CONFIGS / "sweeps" / "mile-small" / "base.yaml")
    assert (base.model.init.kind, str(base.model.init.path)) == ("mile", "runs/study/base-export")
    for path in sweeps("mile-small"):
        for run in load_sweep(path).runs:
            cfg = run.config
            assert (cfg.model.size, cfg.model.image_size, cfg.train.epochs) == ("mile-small", 112, 3)
            assert cfg.model.init == base.model.init and cfg.data.dataset == "slake"


def test_the_cpu_study_is_a_cross_section_of_the_presets_plus_the_trained_baselines():
    presets = [PlanConfig.model_validate(yaml.safe_load(p.read_text())["plan"]) for p in PRESETS.values()]
    runs = load_sweep(CONFIGS / "sweeps" / "mile-small" / "study.yaml").runs
    plans = [run.plan for run in runs]
    baselines = {"T-T-T", "F-T-T"}
    assert baselines <= set(plans) and len(set(plans)) == len(plans)
    for run in runs:
        assert run.plan in baselines or run.config.plan in presets, run.plan


def test_the_study_f_t_t_run_is_the_plain_model_of_instruction_workflow_b():
    # scripts/cpu_study.sh exports that run as runs/instruct/plain-export instead of training plain.yaml again
    (run,) = [
        r for r in load_sweep(CONFIGS / "sweeps" / "mile-small" / "study.yaml").runs if r.plan == "F-T-T"
    ]
    differing = differing_leaves(load_config(CONFIGS / "instruct" / "plain.yaml"), run.config)
    assert differing == set(), differing


def test_the_study_seed_runs_differ_from_the_study_runs_only_in_the_seed():
    # so that `mile report` pools them with the study's seed-1 runs of the same plan
    study = {r.plan: r for r in load_sweep(CONFIGS / "sweeps" / "mile-small" / "study.yaml").runs}
    extra = load_sweep(CONFIGS / "sweeps" / "mile-small" / "study-seeds.yaml").runs
    assert extra and {r.name for r in extra}.isdisjoint(r.name for r in study.values())
    for run in extra:
        assert differing_leaves(study[run.plan].config, run.config) == {"train.seed"}, run.plan
