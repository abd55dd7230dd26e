"""Plot labels: crowded points get labels that overlap neither each other nor the markers."""

import itertools

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from mile.report.plots import place_labels


def _boxes(ax, labels):
    renderer = ax.figure.canvas.get_renderer()
    return [
        Text.get_window_extent(label, renderer) for label in labels
    ]  # the text alone, not its leader line


def test_crowded_labels_do_not_overlap():
    # six plans within half a point of accuracy at one cost, as the study's T-T-* rows around 51 %
    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = [(65.0 + 0.3 * i, 51.0 + 0.1 * i, f"T-T-plan-{i}") for i in range(6)] + [
        (0.1, 20.0, "F-IA3-IA3")
    ]
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    ax.set_xscale("log")
    labels = place_labels(ax, points, markers=[(p[0], p[1]) for p in points])
    fig.canvas.draw()
    assert sorted(label.get_text() for label in labels) == sorted(p[2] for p in points)
    for a, b in itertools.combinations(_boxes(ax, labels), 2):
        assert not a.overlaps(b)
    lone = next(label for label in labels if label.get_text() == "F-IA3-IA3")
    assert lone.arrow_patch is None  # a label with room stays beside its point, no leader line
    assert sum(label.arrow_patch is not None for label in labels) >= 4  # the crowded ones moved, with a line
