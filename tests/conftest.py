"""Shared fixtures. Real data and weights live in ../shared (or $MILE_SHARED); tests that need them fail
loudly when they are missing, because CI always provides them."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("MILE_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not (root / "data").is_dir() or not (root / "weights").is_dir():
        pytest.fail(
            f"shared assets not found at {root} (set MILE_SHARED to the folder holding data/ and weights/)"
        )
    return root
