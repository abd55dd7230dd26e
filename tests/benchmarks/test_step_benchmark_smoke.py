"""The training-step benchmark still runs end to end (tiny architecture, one size); no speed is asserted."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package; spawned workers inherit sys.path
    sys.path.insert(0, str(REPO))

from benchmarks.step_vs_transformers import main  # noqa: E402


def test_quick_step_benchmark_returns_positive_figures(capsys):
    argv = ["--quick", "--sizes", "32", "--steps", "2", "--warmup", "1", "--plan", "T-T-LoRA_r8"]
    rows = main([*argv, "--checkpointing", "--bf16"])
    assert [(r.image_size, r.batch, r.plan) for r in rows] == [(32, 2, "T-T-LoRA_r8")]
    assert set(rows[0].measured) == {"ours", "theirs", "ours+ckpt", "ours+bf16"}
    # bf16 autocast changed the arithmetic (main checks the first losses agree to 1 %)
    assert rows[0].measured["ours+bf16"].first_loss != rows[0].ours.first_loss
    for measured in rows[0].measured.values():
        assert len(measured.steps) == 2
        assert all(t > 0 for step in measured.steps for t in step)
        assert measured.saved_bytes > 0 and measured.static_rss > 0
        assert measured.peak_rss_growth >= 0  # a tiny step may fit in pages malloc already holds
    assert rows[0].ours.trainable == rows[0].theirs.trainable
    assert "| px | batch | plan |" in capsys.readouterr().out
