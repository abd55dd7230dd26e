"""Fixtures for the data tests: tiny datasets in tmp_path and the real data in ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_builders import make_slake, make_vqa_rad


@pytest.fixture
def slake_root(tmp_path: Path) -> Path:
    return make_slake(tmp_path / "slake")


@pytest.fixture
def rad_root(tmp_path: Path) -> Path:
    return make_vqa_rad(tmp_path / "vqa_rad")


@pytest.fixture
def shared_data(shared_dir: Path) -> Path:
    """The real datasets (../shared/data); the root fixture fails loudly when they are missing."""
    data = shared_dir / "data"
    for name in ("slake", "vqa_rad"):
        if not (data / name).is_dir():
            pytest.fail(f"real dataset {data / name} is missing (set MILE_SHARED)")
    return data
