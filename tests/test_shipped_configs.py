"""Every run config shipped under configs/ (and the demo's) validates; the paths they name are where we say."""

from pathlib import Path

import pytest

from mile.config import load_config

REPO = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "sweeps" not in p.parts)


@pytest.mark.parametrize(
    "path", RUN_CONFIGS + [REPO / "mile" / "resources" / "configs" / "demo.yaml"], ids=str
)
def test_config_validates(path):
    load_config(path)


def test_mile_small_configs_point_at_the_shared_weights(shared_dir, monkeypatch):
    monkeypatch.chdir(REPO)  # paths in configs are relative to the repository root
    cfg = load_config(REPO / "configs" / "slake" / "mile-small.yaml")
    assert Path(cfg.model.init.vision).resolve() == (shared_dir / "weights" / "dinov2-small").resolve()
    assert Path(cfg.data.root).resolve() == (shared_dir / "data" / "slake").resolve()
