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


@pytest.fixture
def mile_cli(monkeypatch, capsys):
    """Run `mile ARGS` in this process through its real entry point; returns (exit code, stdout, stderr)."""
    import sys

    from mile.cli.main import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mile", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
