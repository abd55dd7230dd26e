"""Reports over run directories: the paper's table (Markdown + CSV) and plots (PNG).

    from mile.report import write_report

    result = write_report("runs/study", split="validate", rule="yesno")   # report.md, report.csv, *.png

Modules: collect (find and read run directories), table (rows, seed aggregation, Markdown, CSV), plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mile.report.collect import RunRecord, collect, find_run_dirs, load_run, relative
from mile.report.table import (
    Row,
    baseline_row,
    build_rows,
    caption,
    check_choices,
    markdown_table,
    write_csv,
)

PLOTS = {"acc_vs_params.png": "params", "acc_vs_memory.png": "memory", "acc_vs_time.png": "time"}
LOSS_PLOT = "loss_curves.png"


@dataclass
class Report:
    rows: list[Row]
    left_out: list[tuple[RunRecord, str]]  # runs not in the table, with the reason
    markdown: str
    files: list[Path] = field(default_factory=list)
    baselines: list[Row] = field(default_factory=list)  # rows that train nothing, first in the table


def write_report(
    root: str | Path,
    out: str | Path | None = None,
    split: str | None = None,
    rule: str = "yesno",
    label: str = "config",
    baselines: dict[str, dict] | None = None,
    inference: str | None = None,
) -> Report:
    """Collect the runs under `root` and write report.md, report.csv and the plots to `out` (default: root).
    `baselines`: name -> scores shaped like a metrics.json (e.g. the majority answer's), rows before the runs.
    `inference` (generate / rank): each run's answers of that mode; None: those of its own eval.inference."""
    from mile.report.plots import accuracy_plot, loss_plot

    check_choices(rule, label, inference)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"report: {root} is not a directory")
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    done, others = collect(root)
    rows, missing = build_rows(done, split, rule, label, inference)
    shown = split or (rows[0].split if rows else "")
    firsts = [baseline_row(name, scores, shown, rule) for name, scores in (baselines or {}).items()]
    left_out = missing + [(r, r.state + (f": {r.error}" if r.error else "")) for r in others]
    text = render(root, firsts + rows, left_out, rule)
    (out / "report.md").write_text(text, encoding="utf-8")
    files = [out / "report.md", write_csv(firsts + rows, rule, out / "report.csv", root)]
    files += [accuracy_plot(firsts + rows, axis, rule, out / name) for name, axis in PLOTS.items()]
    files.append(loss_plot(done, out / LOSS_PLOT, root))
    return Report(rows, left_out, text, files, firsts)


def render(root: Path, rows: list[Row], left_out: list[tuple[RunRecord, str]], rule: str) -> str:
    runs = sum(len(r.runs) for r in rows)
    lines = [f"# Report: {root}", "", f"{len(rows)} row(s) from {runs} finished run(s).", ""]
    if rows:
        lines += [markdown_table(rows), "", caption(rows, rule), ""]
    if left_out:
        lines += ["## Not in the table", ""]
        lines += [f"- `{relative(record.path, root)}`: {why}" for record, why in left_out] + [""]
    lines += ["## Plots", ""]
    lines += [f"![{name}]({name})" for name in [*PLOTS, LOSS_PLOT]]
    return "\n".join(lines) + "\n"


__all__ = ["Report", "RunRecord", "collect", "find_run_dirs", "load_run", "write_report"]
