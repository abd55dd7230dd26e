"""`mile report` and `mile compare`: argument handling and printing around write_report / write_html /
compare_runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mile.engine.rundir import RunDir
from mile.report import compare, write_report


def report_command(
    directory: Path,
    split: str | None,
    rule: str,
    out: Path | None,
    label: str = "config",
    html: Path | None = None,
    images: str = "embed",
    inference: str | None = None,
) -> None:
    from mile.report.html import check_images, write_html

    check_images(images)  # before anything is written
    report = write_report(directory, out, split, rule, label, inference=inference)
    typer.echo(report.markdown.split("## Plots")[0].rstrip() + "\n")
    typer.echo("wrote " + ", ".join(str(f) for f in report.files))
    if html is not None:
        page = write_html(report, directory, html, rule, images)
        for note in page.notes:
            typer.echo(f"html: {note}")
        typer.echo(
            f"wrote {page.file} ({page.file.stat().st_size / 1024:,.0f} KB, {page.n_questions} questions)"
        )


def compare_command(
    run_a: Path, run_b: Path, split: str | None, rule: str, as_json: bool, inference: str | None = None
) -> None:
    if split is None:
        splits = RunDir(run_a).config().data.eval_splits
        if not splits:
            raise typer.BadParameter(f"{run_a}: its config names no eval split; pass --split")
        split = splits[0]
    try:
        rows = compare.compare_runs(run_a, run_b, split, rule, inference)
    except compare.MissingPredictions as exc:
        mode = f" --inference {inference}" if inference else ""
        raise compare.CompareError(
            f"{exc}; evaluate the run first: mile eval {exc.run_dir} --split {split}{mode}"
        ) from None
    if as_json:
        head = {"a": str(run_a), "b": str(run_b), "split": split, "rule": rule, "inference": inference}
        typer.echo(json.dumps({**head, **compare.comparison_json(rows)}, indent=2))
    else:
        typer.echo(f"split: {split}" + (f", {inference} answers" if inference else ""))
        typer.echo(compare.format_comparison(rows, str(run_a), str(run_b), rule))
