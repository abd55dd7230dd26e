"""`mile report`: argument handling and printing around write_report."""

from __future__ import annotations

from pathlib import Path

import typer

from . import write_report


def report_command(directory: Path, split: str | None, rule: str, out: Path | None) -> None:
    report = write_report(directory, out, split, rule)
    typer.echo(report.markdown.split("## Plots")[0].rstrip())
    typer.echo("")
    typer.echo("wrote " + ", ".join(str(f) for f in report.files))
