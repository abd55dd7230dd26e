"""Shared fixtures. Real data and weights live in ../shared (or $MILE_SHARED); tests that need them fail
loudly when they are missing, because CI always provides them."""

import os

# OpenMP threads that spin while waiting make every small op ~100x slower when another process holds a core
# (measured here: a tiny-model step 8.7 s spinning, 69 ms passive). Set before torch is imported; inherited by the
# `mile` subprocesses the CLI tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

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
