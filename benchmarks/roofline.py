"""How close one T-T-T training step gets to this CPU's matrix-multiply peak (a roofline ratio).

Model FLOPs of one step (forward + backward, counted by torch.utils.flop_counter.FlopCounterMode, with the CPU
flash-attention kernels registered, which torch does not count) divided by the step time, over the fp32 GEMM
peak measured in the same run: the best of a few GEMMs of the model's own shapes, (B*N, D) x (D, 4D) and the
like, through F.linear as the model calls them. Peak and step are measured in alternation, one ratio per round.
A profiled step (torch.profiler, self CPU time by op) then says where the time goes.

    python -m benchmarks.roofline --size 224 --batch 4 --rounds 5
    python -m benchmarks.roofline --size 224 --batch 4 --rounds 5 --precision bf16   # against the bf16 peak
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.blip_pair import architecture
from benchmarks.common import Summary, fused_adamw, header, interleave, load_average, markdown_table
from mile.model.mile import MileModel

aten = torch.ops.aten
# op-name prefixes (profiler names) -> category; the first match wins
CATEGORIES = (
    ("GEMM (mm / addmm / bmm)", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("attention (CPU flash kernel)", ("aten::_scaled_dot_product_flash_attention_for_cpu",)),
    ("patch-embedding convolution", ("aten::mkldnn_convolution", "aten::convolution")),
    ("LayerNorm", ("aten::native_layer_norm",)),
    ("GELU", ("aten::gelu",)),
    ("softmax / cross-entropy", ("aten::_log_softmax", "aten::nll_loss", "aten::cross_entropy")),
    ("fused AdamW", ("aten::_fused_adamw",)),
    ("copies, adds, reductions", ("aten::copy_", "aten::add", "aten::mul", "aten::sum", "aten::clone")),
    ("copies, adds, reductions", ("aten::fill_", "aten::zero_", "aten::cat", "aten::div", "aten::t")),
    ("dtype casts (autocast)", ("aten::_to_copy", "aten::to", "aten::_autocast_to_reduced_precision")),
)


def register_cpu_attention_flops() -> None:
    """Count the CPU flash-attention kernels as torch counts the CUDA ones (4*B*H*T*S*hd forward)."""
    registry = flop_counter.flop_registry
    for op, formula in (
        (aten._scaled_dot_product_flash_attention_for_cpu, flop_counter.sdpa_flop),
        (aten._scaled_dot_product_flash_attention_for_cpu_backward, flop_counter.sdpa_backward_flop),
    ):
        registry.setdefault(op, formula)


@dataclass
class Step:
    model: MileModel
    batch: dict[str, torch.Tensor]
    opt: torch.optim.Optimizer
    bf16: bool = False  # under bf16 autocast (fp32 weights, gradients and optimizer state)

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**self.batch).loss
        loss.backward()
        self.opt.step()


def make_step(args: argparse.Namespace) -> Step:
    torch.manual_seed(0)
    cfg = architecture(args.quick, args.size)
    model = MileModel(cfg).train()
    b, g = args.batch, torch.Generator().manual_seed(1)
    q = torch.randint(1000, 30000, (b, args.question_len), generator=g)
    a = torch.randint(1000, 30000, (b, args.answer_len), generator=g)
    q[:, 0], a[:, 0] = cfg.enc_token_id, cfg.bos_token_id
    pixels = torch.randn(b, 3, args.size, args.size, generator=g)
    batch = dict(
        question_ids=q, question_mask=torch.ones_like(q), answer_ids=a, answer_mask=torch.ones_like(a)
    )
    return Step(model, {**batch, "pixels": pixels}, fused_adamw(model.parameters()), args.precision == "bf16")


def gemm_shapes(model: MileModel, batch: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of the ViT's linear layers: (B*N_tokens, D) x (D, 4D), (B*N, 4D) x (4D, D), (B*N, D) x (D, D)."""
    v = model.config.vision
    m = batch * v.num_tokens
    return [(m, v.width, v.mlp_dim), (m, v.mlp_dim, v.width), (m, v.width, v.width)]


def gemm_peak(shapes: Sequence[tuple[int, int, int]], repeats: int = 5, dtype=torch.float32) -> float:
    """FLOP/s of the best of `repeats` F.linear calls of each shape, operands in `dtype` (bf16: what autocast
    hands the GEMM)."""
    best = 0.0
    for m, k, n in shapes:
        x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        for _ in range(repeats):
            start = time.perf_counter()
            F.linear(x, w)
            best = max(best, 2 * m * k * n / (time.perf_counter() - start))
    return best


def count_flops(step: Step) -> tuple[int, dict[str, int]]:
    """Total FLOPs of one step and FLOPs per profiler op name."""
    register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        step()
    per_op = {str(op).replace(".", "::", 1): n for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), per_op


def profile_step(step: Step) -> dict[str, float]:
    """Self CPU seconds of one step per op name."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}


def category(op: str) -> str:
    return next((name for name, prefixes in CATEGORIES if op.startswith(prefixes)), "other")


def breakdown(times: dict[str, float], flops: dict[str, int], peak: float) -> list[list[object]]:
    """Per category: self time, share of the profiled step, GFLOP, achieved GFLOP/s and its share of the peak."""
    total = sum(times.values())
    cats: dict[str, list[float]] = {}
    for op, t in times.items():
        entry = cats.setdefault(category(op), [0.0, 0.0])
        entry[0] += t
    for op, n in flops.items():
        cats.setdefault(category(op), [0.0, 0.0])[1] += n
    rows = []
    for name, (t, n) in sorted(cats.items(), key=lambda kv: -kv[1][0]):
        rate = n / t if t and n else 0.0
        cells = [name, f"{t * 1e3:.0f}", f"{100 * t / total:.1f}", f"{n / 1e9:.1f}" if n else ""]
        rows.append(cells + ([f"{rate / 1e9:.0f}", f"{rate / peak:.2f}"] if n else ["", ""]))
    return rows


def top_ops(times: dict[str, float], flops: dict[str, int], peak: float, n: int = 12) -> list[list[object]]:
    """The `n` ops with the most self time, with their FLOP rate where they do counted FLOPs."""
    total = sum(times.values())
    rows = []
    for op, t in sorted(times.items(), key=lambda kv: -kv[1])[:n]:
        rate = flops.get(op, 0) / t if t else 0.0
        cells = [op, category(op), f"{t * 1e3:.0f}", f"{100 * t / total:.1f}"]
        rows.append(cells + ([f"{rate / 1e9:.0f}", f"{rate / peak:.2f}"] if rate else ["", ""]))
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="image size (default 224; quick 32)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5, help="(peak, step) pairs; the ratio is their median")
    p.add_argument("--question-len", type=int, default=35)
    p.add_argument("--answer-len", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: the step under autocast, the peak of bf16 GEMMs",
    )
    p.add_argument("--quick", action="store_true", help="the tiny architecture: a smoke test in seconds")
    args = p.parse_args(argv)
    args.size = args.size or (32 if args.quick else 224)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    what = f"T-T-T, {args.precision}, {args.size} px, batch {args.batch}, fused AdamW, {args.rounds} rounds"
    print(header("benchmarks.roofline", argv, args.threads, what), flush=True)
    step = make_step(args)
    step()  # warm-up
    flops, per_op = count_flops(step)
    shapes = gemm_shapes(step.model, args.batch)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak_fn = lambda: gemm_peak(shapes, dtype=dtype)  # noqa: E731
    timing = interleave({"peak": peak_fn, "step": lambda: time_step(step)}, args.rounds)
    peaks, steps = timing["peak"], timing["step"]
    ratios = Summary.of([flops / t / p for t, p in zip(steps, peaks, strict=True)])
    t, peak = Summary.of(steps), Summary.of(peaks).median
    result = dict(flops=flops, step=t, peak=peak, ratio=ratios)
    head = ["GFLOP / step", "step ms (IQR)", "achieved GFLOP/s", "GEMM peak GFLOP/s (IQR)", "ratio (IQR)"]
    cells = [
        f"{flops / 1e9:.1f}",
        f"{t.median * 1e3:.0f} ± {t.iqr * 1e3:.0f}",
        f"{flops / t.median / 1e9:.1f}",
    ]
    cells += [
        f"{peak / 1e9:.1f} ± {Summary.of(peaks).iqr / 1e9:.1f}",
        f"{ratios.median:.2f} ± {ratios.iqr:.2f}",
    ]
    print(f"load average at the end: {load_average()}; GEMM shapes (M, K, N): {shapes}\n")
    print(markdown_table(head, [cells]) + "\n")
    times = profile_step(step)
    result["breakdown"] = breakdown(times, per_op, peak)
    head = ["where the time goes", "self ms", "% of profiled step", "GFLOP", "GFLOP/s", "of peak"]
    print(markdown_table(head, result["breakdown"]) + "\n")
    head = ["op", "category", "self ms", "% of profiled step", "GFLOP/s", "of peak"]
    print(markdown_table(head, top_ops(times, per_op, peak)))
    return result


def time_step(step: Step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
