"""Fixtures for the instruction-data tests: tiny SLAKE / VQA-RAD roots (reusing tests/data's builders), the
authors' release format, and the real data in ../shared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))  # tests/data/data_builders.py

from data_builders import make_slake, make_vqa_rad  # noqa: E402
from instruct_builders import RAD_OPTIONS_TRAIN  # noqa: E402


@pytest.fixture
def slake_root(tmp_path: Path) -> Path:
    return make_slake(tmp_path / "slake")


@pytest.fixture
def rad_root(tmp_path: Path) -> Path:
    return make_vqa_rad(tmp_path / "vqa_rad")


@pytest.fixture
def rad_options_root(tmp_path: Path) -> Path:
    return make_vqa_rad(tmp_path / "vqa_rad_opts", train=RAD_OPTIONS_TRAIN)


@pytest.fixture
def shared_data(shared_dir: Path) -> Path:
    """The real datasets (../shared/data); the root fixture fails loudly when they are missing."""
    data = shared_dir / "data"
    for name in ("slake", "vqa_rad"):
        if not (data / name).is_dir():
            pytest.fail(f"real dataset {data / name} is missing (set MILE_SHARED)")
    return data
