"""Each benchmark's quick mode still runs end to end and produces positive figures; no speed is asserted."""

import math
import sys
from pathlib import Path

import torch
from torch.testing import assert_close

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks import feature_cache, generation, precision, roofline, scaling  # noqa: E402


def test_roofline_quick_reports_flops_peak_and_breakdown(capsys):
    result = roofline.main(["--quick", "--rounds", "2"])
    assert result["flops"] > 0 and result["peak"] > 0 and result["step"].median > 0
    assert 0 < result["ratio"].median < math.inf
    categories = [row[0] for row in result["breakdown"]]
    assert "GEMM (mm / addmm / bmm)" in categories
    assert "| GFLOP / step |" in capsys.readouterr().out


def test_roofline_quick_measures_the_bf16_step_against_the_bf16_peak(capsys):
    result = roofline.main(["--quick", "--rounds", "2", "--precision", "bf16"])
    assert result["flops"] > 0 and result["peak"] > 0 and 0 < result["ratio"].median < math.inf
    assert "T-T-T, bf16" in capsys.readouterr().out


def test_precision_quick_measures_both_precisions_through_the_engine(capsys):
    argv = [
        "--quick",
        "--plans",
        "F-T-T",
        "T-T-LoRA_r8",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--eval-rounds",
        "1",
    ]
    pairs = precision.main([*argv, "--eval-questions", "16", "--blip-batch", "0"])
    assert [(p.plan, p.image_size) for p in pairs] == [("F-T-T", 32), ("T-T-LoRA_r8", 32)]
    for pair in pairs:
        assert {v: info["used"] for v, info in pair.info.items()} == {"fp32": "fp32", "bf16": "bf16"}
        assert pair.info["fp32"]["first_loss"] != pair.info["bf16"]["first_loss"]  # autocast really ran
        for p in ("fp32", "bf16"):
            assert len(pair.steps[p]) == 2 and len(pair.evals[p]) == 1 and pair.peak[p] > 0
            assert pair.samples_per_s(p).median > 0 and pair.questions_per_s(p).median > 0
    assert "| plan | px | variant |" in capsys.readouterr().out


def test_scaling_quick_covers_every_plan_and_configuration(capsys):
    points = scaling.main(["--quick", "--steps", "2", "--plans", "T-T-T", "F-F-LoRA_r8"])
    assert {(p.plan, p.size, p.batch) for p in points} == {
        (plan, size, batch)
        for plan in ("T-T-T", "F-F-LoRA_r8")
        for size, batch in ((16, 2), (32, 2), (32, 1))
    }
    for p in points:
        assert len(p.steps) == 2 and all(t > 0 for t in p.steps)
        assert p.saved_bytes > 0 and p.rss_growth >= 0
    assert "| plan | px | batch |" in capsys.readouterr().out


def test_generation_quick_times_every_variant_and_compares_answers(capsys):
    results = generation.main(["--quick", "--rounds", "2", "--batch", "4"])
    beam, lora, encode = "beam 3, KV cache", "beam 3, KV cache, LoRA", generation.ENCODE
    assert list(results) == [
        beam,
        "beam 3, no cache",
        "greedy, KV cache",
        "greedy, no cache",
        f"{lora} unmerged",
        f"{lora} merged",
        encode,
        f"{encode}, LoRA unmerged",
        f"{encode}, LoRA merged",
    ]
    for r in results.values():
        assert len(r["times"]) == 2 and all(t > 0 for t in r["times"])
    answers = {name: r["answers"] for name, r in results.items()}
    assert all(answers[n].shape == (4, 10) for n in results if not n.startswith(encode))  # 10 new tokens
    # the cached and the recomputing search find the same answers; merging LoRA changes no answer
    for name, ref in [
        ("beam 3, no cache", beam),
        ("greedy, no cache", "greedy, KV cache"),
        (f"{lora} merged", f"{lora} unmerged"),
    ]:
        assert torch.equal(answers[name], answers[ref]), name
    assert_close(answers[f"{encode}, LoRA merged"], answers[f"{encode}, LoRA unmerged"], rtol=1e-4, atol=1e-5)
    # ... while the LoRA model (random non-zero B) is another model: other question states, other answers here
    assert not torch.equal(answers[f"{lora} unmerged"], answers[beam])
    assert (answers[f"{encode}, LoRA unmerged"] - answers[encode]).abs().max() > 1e-3
    out = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in out.splitlines()
        if line.startswith("| ")
    }
    assert "questions/s" in out  # the table's "answers = reference" column says the same
    assert [rows[n] for n in ("beam 3, no cache", "greedy, no cache", f"{lora} merged")] == ["4/4"] * 3


def test_feature_cache_quick_reports_cold_and_warm_epochs(shared_dir, monkeypatch, capsys):
    monkeypatch.setenv("MILE_SHARED", str(shared_dir))
    rows = feature_cache.main(["--quick", "--epochs", "2", "--repeats", "1"])
    assert {(r.plan, r.cache) for r in rows} == {
        (p, c) for p in feature_cache.PLANS for c in ("none", "memory")
    }
    for r in rows:
        assert len(r.runs) == 1 and len(r.runs[0]) == 2 and all(t > 0 for t in r.runs[0])
        assert bool(r.stats) == (r.cache == "memory")
    assert "| plan | feature cache |" in capsys.readouterr().out
