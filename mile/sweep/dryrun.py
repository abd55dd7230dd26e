"""`--dry-run`: list a sweep's runs with their trainable parameters, without training.

Each distinct model section is built once as the config says (a random init on the meta device: shapes without
storage); every run applies its plan to a copy and counts (the numbers params.json will hold). When the
configured weights cannot be loaded here (offline, a path still to be filled in), the counts come from the
`model.size` architecture instead, and the listing says so.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from mile.config import ModelSection
from mile.engine.rundir import RunDir

from .naming import format_value
from .spec import Sweep, SweepRun


@dataclass
class PlanCount:
    run: SweepRun
    state: str  # the run directory's status: new / running / done / failed
    trainable: int | None = None
    total: int | None = None
    pct: float | None = None
    note: str | None = None  # why the counts are approximate, or the plan's error


def count_runs(sweep: Sweep, runs: list[SweepRun]) -> list[PlanCount]:
    from mile.tuning import apply_plan

    bases: dict[str, tuple[Any, str | None]] = {}
    counts = []
    for run in runs:
        state = RunDir(sweep.run_dir(run)).status().get("state", "new")
        key = json.dumps(run.config.model.model_dump(mode="json"), sort_keys=True)
        if key not in bases:
            bases[key] = _base_model(run.config.model)
        model, note = bases[key]
        try:
            report = apply_plan(copy.deepcopy(model), run.config.plan).trainable_report()
        except Exception as exc:  # a plan this model cannot take: show it in the listing
            counts.append(PlanCount(run, state, note=f"plan error: {type(exc).__name__}: {exc}"))
            continue
        counts.append(
            PlanCount(run, state, report["trainable"], report["total"], report["trainable_pct"], note)
        )
    return counts


def _base_model(m: ModelSection) -> tuple[Any, str | None]:
    import torch

    from mile.engine.build import build_model
    from mile.pretrained import build

    def on_meta() -> Any:
        with torch.device("meta"):
            return build("random", size=m.size, image_size=m.image_size).model

    if m.init.kind == "random":
        return on_meta(), None
    try:
        return build_model(m).model, None
    except Exception as exc:  # offline, a placeholder path, ...: fall back to the named architecture
        if m.size is None:
            raise
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return on_meta(), f"counted on model.size={m.size}: init {m.init.kind} not loadable here ({reason})"


def format_counts(sweep: Sweep, counts: list[PlanCount], shard: tuple[int, int]) -> str:
    """A fixed-width listing: position, name, plan, varying values, status, trainable / total, %."""
    i, n = shard
    head = f"sweep {sweep.path}: {len(sweep.runs)} run(s) in {sweep.output_dir}"
    head += f"; shard {i}/{n}: {len(counts)}" if n > 1 else ""
    rows = [("#", "name", "plan", "varying", "status", "trainable", "total", "%")]
    for c in counts:
        values = " ".join(f"{k}={format_value(v)}" for k, v in c.run.values.items())
        numbers = [_text(c.trainable, ","), _text(c.total, ","), _text(c.pct, ".3f")]
        rows.append((str(c.run.index), c.run.name, c.run.plan, values or "-", c.state, *numbers))
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    right = {0, 5, 6, 7}  # the position and the numbers
    lines = [head]
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        lines.append("  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in pairs).rstrip())
    lines += [f"note: {note}" for note in sorted({c.note for c in counts if c.note})]
    return "\n".join(lines)


def _text(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
