"""`mile modules`: the module tree, what the plan's methods hit, and the parameter accounting."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from torch import nn

from mile.config import load_config
from mile.engine.build import build_model
from mile.tuning import apply_plan, count_parameters


def modules_command(config: Path | None, overrides: list[str], as_json: bool, depth: int) -> None:
    cfg = load_config(config, overrides)
    built = build_model(cfg.model)
    handle = apply_plan(built.model, cfg.plan)
    counts = count_parameters(built.model)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    typer.echo(f"plan {handle.plan.notation()}  (image size {built.model.config.vision.image_size} px)")
    typer.echo(built.report.summary() + "\n")  # what came from the checkpoint, what starts fresh
    typer.echo(tree(built.model, depth) + "\n")
    for tower, names in handle.targets().items():
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} modules)" if len(names) > 6 else "")
        typer.echo(f"{tower}: {len(names)} module(s) hit: {shown}")
    typer.echo("\n" + counts_table(counts))


def tree(model: nn.Module, depth: int) -> str:
    """Modules down to `depth` dots, with parameter counts; repeated layers collapse to their first index."""
    lines = []
    for name, module in model.named_modules():
        if not name or name.count(".") >= depth:
            continue
        parts = name.split(".")
        if any(p.isdigit() and p != "0" for p in parts):
            continue  # layers 1..N repeat layer 0
        n = sum(p.numel() for p in module.parameters())
        label = ".".join("N" if p.isdigit() else p for p in parts)
        lines.append(
            f"{'  ' * (len(parts) - 1)}{label.split('.')[-1]:<24} {type(module).__name__:<18} {n:>13,}"
        )
    return "\n".join(lines)


def counts_table(counts: dict) -> str:
    rows = [f"{'tower':<14}{'params':>15}{'trainable':>15}{'%':>9}"]
    for tower, c in counts["towers"].items():
        pct = 100.0 * c["trainable"] / c["params"] if c["params"] else 0.0
        rows.append(f"{tower:<14}{c['params']:>15,}{c['trainable']:>15,}{pct:>9.3f}")
    rows.append(
        f"{'total':<14}{counts['total']:>15,}{counts['trainable']:>15,}{counts['trainable_pct']:>9.3f}"
    )
    return "\n".join(rows)
