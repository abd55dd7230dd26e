"""Which exceptions are the user's to fix (printed as one message) and which are bugs (full traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer


def user_errors() -> tuple[type[BaseException], ...]:
    from mile.atomic import WriteError
    from mile.config import ConfigError
    from mile.data.errors import DataError
    from mile.engine.checkpoint import NonFiniteWeights
    from mile.engine.train import NonFiniteLoss
    from mile.model.checkpoints import CheckpointError
    from mile.report.compare import CompareError
    from mile.tuning.errors import PlanError

    return (
        ConfigError,
        DataError,
        CheckpointError,
        CompareError,
        PlanError,
        NonFiniteLoss,
        NonFiniteWeights,
        WriteError,
        FileNotFoundError,
    )


def run_guarded(app: Callable[[], None]) -> None:
    try:
        app()
    except user_errors() as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
