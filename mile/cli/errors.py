"""Which exceptions are the user's to fix (printed as one message) and which are bugs (full traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from mile.errors import MileError

# A path the user named that is not there (or is in the way) is theirs to fix too; the OS message names it.
USER_ERRORS = (MileError, FileNotFoundError, FileExistsError, NotADirectoryError)


def run_guarded(app: Callable[[], None]) -> None:
    try:
        app()
    except USER_ERRORS as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
