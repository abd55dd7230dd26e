"""Training-step time and memory vs image size and batch size, for a few plans, on mile-small (random init).

Per plan: one model per image size (the ViT's position embeddings are built for one size), fused AdamW over
the trainable parameters, a fixed random batch (question 24 / answer 6 tokens). The image size varies at the
base batch, the batch at the base image size. Each configuration is warmed up, then measured alone: peak RSS
growth of one step over the RSS once weights, gradients and optimizer state exist (activation memory) and the
bytes autograd saves for backward in its forward. The timed steps of a plan's configurations are then
interleaved (rotating order), so the ratios to the base configuration are measured in the same spells.

    python -m benchmarks.scaling --sizes 112 224 336 476 --batches 1 2 4 8 --steps 5
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from benchmarks.common import (
    MB,
    SavedTensorMeter,
    Summary,
    fused_adamw,
    header,
    interleave,
    load_average,
    markdown_table,
    ms,
    peak_rss_bytes,
    reset_peak_rss,
    timed,
)
from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.tuning import apply_plan

PLANS = ("T-T-T", "F-T-LoRA_r8", "F-F-LoRA_r8")


@dataclass
class Point:
    plan: str
    size: int
    batch: int
    tokens: int
    saved_bytes: int = 0
    rss_growth: int = 0
    steps: list[float] | None = None

    def time(self) -> Summary:
        return Summary.of(self.steps or [])


def build(plan: str, size: int, quick: bool) -> tuple[MileModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = MileModel(size_config("tiny" if quick else "mile-small", size))
    if plan != "T-T-T":
        apply_plan(model, plan)
    return model.train(), fused_adamw(model.parameters())


def make_batch(model: MileModel, batch: int, size: int) -> dict[str, torch.Tensor]:
    g, cfg = torch.Generator().manual_seed(1), model.config
    q = torch.randint(1000, 30000, (batch, 24), generator=g)
    a = torch.randint(1000, 30000, (batch, 6), generator=g)
    q[:, 0], a[:, 0] = cfg.enc_token_id, cfg.bos_token_id
    inputs = dict(
        question_ids=q, question_mask=torch.ones_like(q), answer_ids=a, answer_mask=torch.ones_like(a)
    )
    return {**inputs, "pixels": torch.randn(batch, 3, size, size, generator=g)}


def step_fn(model: MileModel, opt: torch.optim.Optimizer, x: dict) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=False)
        model(**x).loss.backward()
        opt.step()

    return step


def measure_memory(point: Point, model: MileModel, step: Callable[[], None], x: dict) -> None:
    """Warm-up, then peak RSS growth of one step, then the bytes saved for backward in one forward."""
    step()
    base = reset_peak_rss()
    step()
    point.rss_growth = peak_rss_bytes() - base
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        loss = model(**x).loss
    point.saved_bytes = meter.total()
    del loss


def run_plan(plan: str, args: argparse.Namespace) -> list[Point]:
    configs = [(s, args.base_batch) for s in args.sizes]
    configs += [(args.base_size, b) for b in args.batches if b != args.base_batch]
    models = {s: build(plan, s, args.quick) for s in dict.fromkeys(s for s, _ in configs)}
    points, steps = {}, {}
    for size, batch in configs:
        model, opt = models[size]
        x = make_batch(model, batch, size)
        point = Point(plan, size, batch, model.config.vision.num_tokens)
        steps[(size, batch)] = step_fn(model, opt, x)
        measure_memory(point, model, steps[(size, batch)], x)
        points[(size, batch)] = point
    times = interleave({k: (lambda f=f: timed(f)) for k, f in steps.items()}, args.steps)
    for key, point in points.items():
        point.steps = times[key]
    del models, steps
    gc.collect()
    return list(points.values())


def table(points: Sequence[Point], base_size: int, base_batch: int) -> str:
    head = ["plan", "px", "batch", "image tokens", "step ms (IQR)", "ms / sample", "time / base"]
    head += ["saved for backward MiB", "peak RSS growth MiB"]
    base = {p.plan: p.time().median for p in points if (p.size, p.batch) == (base_size, base_batch)}
    rows = []
    for p in points:
        t = p.time()
        cells: list[object] = [p.plan, p.size, p.batch, p.tokens, ms(t), f"{t.median * 1e3 / p.batch:.0f}"]
        cells += [f"{t.median / base[p.plan]:.2f}x", f"{p.saved_bytes / MB:.0f}", f"{p.rss_growth / MB:.0f}"]
        rows.append(cells)
    return markdown_table(head, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plans", nargs="+", default=list(PLANS), help="plan notations")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="image sizes, multiples of the patch")
    p.add_argument("--batches", type=int, nargs="+", default=None)
    p.add_argument("--base-size", type=int, default=None, help="image size of the batch sweep (224)")
    p.add_argument("--base-batch", type=int, default=4, help="batch of the image-size sweep")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny architecture: a smoke test in seconds")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([16, 32] if args.quick else [112, 224, 336, 476])
    args.batches = args.batches or ([1, 2] if args.quick else [1, 2, 4, 8])
    args.base_size = args.base_size or (32 if args.quick else 224)
    if args.quick:
        args.base_batch = min(args.base_batch, 2)
    return args


def main(argv: Sequence[str] | None = None) -> list[Point]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    what = (
        f"{'tiny' if args.quick else 'mile-small'} random init, fp32, fused AdamW, {args.steps} timed steps"
    )
    print(header("benchmarks.scaling", argv, args.threads, what), flush=True)
    points = []
    for plan in args.plans:
        points += run_plan(plan, args)
        print(f"done {plan}; load average {load_average()}", flush=True)
    print()
    print(table(points, args.base_size, args.base_batch))
    return points


if __name__ == "__main__":
    main()
