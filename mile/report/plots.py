"""The report's figures as PNG (matplotlib, Agg canvas, no pyplot state): accuracy (global and closed) against
trainable %, peak memory and training time, each with the Pareto front of global accuracy; loss curves per run.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from .collect import RunRecord, relative
from .table import Row

DPI = 120
AXES = {
    "params": ("trainable parameters (% of all, log scale)", lambda r: r.params_pct),
    "memory": ("peak memory in training (MB; {kinds})", lambda r: r.memory_mb),
    "time": ("training wall time (s)", lambda r: r.wall_s),
}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both counts (smaller x, larger y), by increasing x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def accuracy_plot(rows: list[Row], axis: str, rule: str, file: Path) -> Path:
    """Global and closed accuracy (mean, error bar = std over seeds) against one cost axis."""
    label, cost = AXES[axis]
    kinds = " / ".join(sorted({r.memory_kind for r in rows if r.memory_kind})) or "n/a"
    fig, ax = _figure()
    placed = [r for r in rows if cost(r) is not None and r.acc["global"][0] is not None]
    for group, marker, color in (("global", "o", "tab:blue"), ("closed", "s", "tab:orange")):
        pts = [(cost(r), *r.acc[group]) for r in placed if r.acc[group][0] is not None]
        if pts:
            xs, ys, es = zip(*pts, strict=True)
            err = [e or 0.0 for e in es]
            name = f"{group} ({rule})" if group == "closed" else group
            ax.errorbar(xs, ys, yerr=err, fmt=marker, color=color, label=name, capsize=3, alpha=0.85)
    for r in rows:  # a baseline (trains nothing, no cost) is a level to beat
        if not r.runs and r.acc["global"][0] is not None:
            ax.axhline(
                r.acc["global"][0], color="grey", linestyle="--", linewidth=1, label=f"{r.setting} (global)"
            )
    front = pareto_front([(cost(r), r.acc["global"][0]) for r in placed])
    if front:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="tab:green", linewidth=1.2, label="Pareto front (global)")
        ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="tab:green", linewidths=1.5)
    if axis == "params" and placed:
        ax.set_xscale("log")
    marks = [(cost(r), r.acc[g][0]) for r in placed for g in ("global", "closed") if r.acc[g][0] is not None]
    place_labels(ax, [(cost(r), r.acc["global"][0], r.label) for r in placed], marks)
    ax.set_xlabel(label.format(kinds=kinds))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"accuracy vs {axis} (split {', '.join(sorted({r.split for r in rows})) or '-'})")
    _finish(ax, bool(placed), "no runs with this measurement", fontsize=8, loc="best")
    fig.savefig(file)
    return file


# where a label may go, in points from its point: right, then above / below, then left (-1: right-aligned)
OFFSETS = [(4, 4), (4, -10), (4, 13), (4, -19), (-4, 4), (-4, -10), (4, 22), (4, -28), (-4, 13), (-4, -19),
           (4, 31), (4, -37), (-4, 22), (-4, -28)]  # fmt: skip


def place_labels(
    ax, points: list[tuple[float, float, str]], markers: list[tuple[float, float]] = (), fontsize: float = 7
) -> list:
    """Label each point where its text overlaps no label placed before it and no marker (the first free spot of
    OFFSETS, the points taken from left to right), with a thin line to the point when the label had to move."""
    fig = ax.figure
    fig.canvas.draw()  # the final limits and layout: the points' display coordinates are fixed from here
    renderer = fig.canvas.get_renderer()
    half = 3 * fig.dpi / 72  # about a marker's half width, in pixels
    taken = [Bbox.from_extents(u - half, v - half, u + half, v + half)
             for u, v in ax.transData.transform(list(markers))] if markers else []  # fmt: skip
    labels = []
    for x, y, text in sorted(points, key=lambda p: (p[0], p[1])):
        for offset in OFFSETS:
            box = _label_box(ax, renderer, x, y, text, offset, fontsize)
            if not any(box.overlaps(other) for other in taken):
                break
        else:  # no free spot: the first, overlapping
            offset = OFFSETS[0]
            box = _label_box(ax, renderer, x, y, text, offset, fontsize)
        taken.append(box)
        line = {"arrowstyle": "-", "linewidth": 0.5, "color": "grey", "shrinkA": 0, "shrinkB": 2}
        labels.append(
            ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=offset,
                fontsize=fontsize,
                ha="left" if offset[0] > 0 else "right",
                va="bottom",
                arrowprops=None if offset == OFFSETS[0] else line,
            )  # fmt: skip
        )
    return labels


def _label_box(ax, renderer, x, y, text, offset, fontsize):
    """The display-space box a label at `offset` would take (drawn, measured, removed)."""
    probe = ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=fontsize,
                        ha="left" if offset[0] > 0 else "right", va="bottom")  # fmt: skip
    box = probe.get_window_extent(renderer).expanded(1.04, 1.15)
    probe.remove()
    return box


def loss_plot(records: list[RunRecord], file: Path, root: Path) -> Path:
    """Training loss against optimizer step, one line per run (labelled with its directory)."""
    fig, ax = _figure(wide=len(records) > 8)
    drawn = 0
    for record in records:
        points = [(e["step"], e["loss"]) for e in record.log if "step" in e and e.get("loss") is not None]
        if not points:
            continue
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, linewidth=1.2, label=relative(record.path, root))
        drawn += 1
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss per run")
    outside = (1.01, 1.0) if drawn > 8 else None
    _finish(ax, drawn > 0, "no train_log.jsonl entries", fontsize=7, loc="upper left", bbox_to_anchor=outside)
    fig.savefig(file)
    return file


def _figure(wide: bool = False):
    fig = Figure(figsize=(11 if wide else 8, 5.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(ax, drawn: bool, empty: str, **legend) -> None:
    """A legend when something was drawn, else `empty` in the middle; a grid either way."""
    if drawn:
        ax.legend(**legend)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
