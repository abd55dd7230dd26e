"""One training step (forward + backward + AdamW) of our MileModel vs transformers' BlipForQuestionAnswering.

Both models get the blip-base architecture (or `tiny` with --quick) and the very same random weights: a
transformers model is built, saved with save_pretrained and loaded by both sides (see blip_pair.py). Dropout is
0 in both, the label smoothing is the same, masks are all ones (no padding), so the two do identical arithmetic;
the first losses are checked to agree and, under a plan, the trainable parameter counts to be equal. `--plan
T-T-LoRA_r8` trains ViT and JTM fully and LoRA r=8 on the decoder's query/value (ours through mile.tuning, theirs
through peft); `--checkpointing` adds ours with gradient checkpointing in all three towers, `--bf16` ours under bf16
autocast (fp32 master weights; theirs stays in fp32, what a user of transformers + peft would run). Both
sides use fused AdamW over the trainable parameters. Each model lives in its own fresh spawned process, which
measures its memory alone (static RSS, peak RSS growth of one step = activation memory, bytes saved for
backward); the parent then interleaves their timed steps (rotating order) so machine noise hits all alike.

    python -m benchmarks.step_vs_transformers --sizes 384 --batch 4 --plan T-T-LoRA_r8 --checkpointing
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.blip_pair import PLANS, Job, architecture, build, save_checkpoint
from benchmarks.common import (
    GB,
    MB,
    SavedTensorMeter,
    Summary,
    Worker,
    fused_adamw,
    header,
    interleave,
    load_average,
    markdown_table,
    ms,
    peak_rss_bytes,
    reset_peak_rss,
)


@dataclass
class Measured:
    """One model at one size: memory figures from its fresh process and its timed steps (seconds)."""

    first_loss: float
    trainable: int
    static_rss: int  # weights, gradients, optimizer state (and the process itself) after warm-up
    saved_bytes: int
    saved_attention_map_bytes: int
    peak_rss_growth: int  # activation memory: peak RSS of one step minus static_rss
    steps: list[tuple[float, float, float]]  # (forward, backward, optimizer) per timed step

    def total(self) -> Summary:
        return Summary.of([sum(s) for s in self.steps])

    def phase(self, i: int) -> float:
        return Summary.of([s[i] for s in self.steps]).median


@dataclass
class Row:
    image_size: int
    batch: int
    plan: str
    measured: dict[str, Measured]  # kind -> figures

    @property
    def ours(self) -> Measured:
        return self.measured["ours"]

    @property
    def theirs(self) -> Measured:
        return self.measured["theirs"]


def train_step(
    loss_fn: Callable[[], Tensor], opt: torch.optim.Optimizer
) -> tuple[float, float, float, float]:
    """(loss, forward s, backward s, optimizer s). Gradients stay allocated between steps (zeroed, not freed)."""
    opt.zero_grad(set_to_none=False)
    t0 = time.perf_counter()
    loss = loss_fn()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return loss.item(), t1 - t0, t2 - t1, t3 - t2


def measure_memory(
    model: nn.Module, loss_fn: Callable[[], Tensor], opt: torch.optim.Optimizer, job: Job
) -> dict[str, int]:
    """Static RSS and peak RSS growth of one step (after warm-up), then the bytes saved for backward in another
    step. With gradient checkpointing the saved bytes leave out the block inputs checkpointing holds itself."""
    base = reset_peak_rss()
    train_step(loss_fn, opt)
    growth = peak_rss_bytes() - base
    opt.zero_grad(set_to_none=False)
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        loss = loss_fn()
    loss.backward()
    opt.step()

    def is_attention_map(shape: tuple[int, ...]) -> bool:  # (B, H, T, S) with neither T nor S a head dim
        return len(shape) == 4 and shape[1] == job.heads and job.head_dim not in shape[2:]

    return dict(
        static_rss=base,
        saved_bytes=meter.total(),
        saved_attention_map_bytes=meter.total(is_attention_map),
        peak_rss_growth=growth,
    )


def worker(kind: str, job: Job, conn: Connection) -> None:
    """A fresh process holding one model: build on 'build', then one timed training step per 'step'."""
    try:
        torch.set_num_threads(job.threads)
        conn.recv()  # wait for our turn, so that builds and measurements never share the CPU
        model, loss_fn = build(kind, job)
        opt = fused_adamw(model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        first_loss = train_step(loss_fn, opt)[0]
        for _ in range(job.warmup - 1):
            train_step(loss_fn, opt)
        memory = measure_memory(model, loss_fn, opt, job)
        conn.send(("ok", dict(first_loss=first_loss, trainable=trainable, **memory)))
        while conn.recv() == "step":
            conn.send(("ok", train_step(loss_fn, opt)[1:]))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_size(args: argparse.Namespace, image_size: int, tmp: Path) -> Row:
    cfg = architecture(args.quick, image_size)
    directory = tmp / f"blip-{image_size}"
    save_checkpoint(cfg, directory)
    sizes = dict(image_size=image_size, batch=args.batch, question_len=args.question_len)
    sizes.update(answer_len=args.answer_len, heads=cfg.text.heads, head_dim=cfg.text.width // cfg.text.heads)
    job = Job(str(directory), args.plan, warmup=max(args.warmup, 1), threads=args.threads, **sizes)
    assert cfg.vision.heads == cfg.text.heads and cfg.vision.width == cfg.text.width
    kinds = ("ours", "theirs") + ("ours+ckpt",) * args.checkpointing + ("ours+bf16",) * args.bf16
    ctx = mp.get_context("spawn")
    # All import in parallel, then build, warm up and measure memory in turn, then interleave timed steps.
    workers = {kind: Worker(ctx, kind, worker, (kind, job)) for kind in kinds}
    try:
        memory = {kind: w.call("build") for kind, w in workers.items()}
        calls = {kind: (lambda w=w: w.call("step")) for kind, w in workers.items()}
        steps = interleave(calls, args.steps)
    finally:
        for w in workers.values():
            w.stop()
        shutil.rmtree(directory, ignore_errors=True)
    row = Row(image_size, args.batch, args.plan, {k: Measured(steps=steps[k], **memory[k]) for k in kinds})
    check_same_work(row)
    return row


def check_same_work(row: Row) -> None:
    """Every variant trains what theirs trains, from the same first loss (bf16 to 1 %, fp32 to 0.1 %)."""
    theirs = row.theirs
    for kind, m in row.measured.items():
        tolerance = 1e-2 if kind == "ours+bf16" else 1e-3
        if abs(m.first_loss - theirs.first_loss) > tolerance * max(1.0, abs(theirs.first_loss)):
            raise RuntimeError(
                f"first losses differ: {m.first_loss} ({kind}) vs {theirs.first_loss} (theirs)"
            )
        if m.trainable != theirs.trainable:
            raise RuntimeError(f"trainable parameters differ: {m.trainable} ({kind}) vs {theirs.trainable}")


HEAD = ["px", "batch", "plan", "model", "trainable M", "step ms (IQR)", "time / theirs", "static RSS GiB"]
HEAD += ["activations MiB (peak RSS growth)", "activations / theirs", "peak RSS GiB", "saved MiB"]
DETAIL_HEAD = ["px", "model", "forward ms", "backward ms", "AdamW ms", "fastest step ms"]
DETAIL_HEAD += ["saved attention maps MiB", "first loss"]


def _mb(n: int) -> str:
    return f"{n / MB:.0f}"


def _row(r: Row, kind: str) -> list[object]:
    m, t = r.measured[kind], r.theirs
    cells: list[object] = [r.image_size, r.batch, r.plan, kind, f"{m.trainable / 1e6:.1f}", ms(m.total())]
    cells += [f"{m.total().median / t.total().median:.2f}x", f"{m.static_rss / GB:.2f}"]
    cells += [_mb(m.peak_rss_growth), f"{m.peak_rss_growth / max(t.peak_rss_growth, 1):.2f}x"]
    return cells + [f"{(m.static_rss + m.peak_rss_growth) / GB:.2f}", _mb(m.saved_bytes)]


def _detail(r: Row, kind: str) -> list[object]:
    m = r.measured[kind]
    cells: list[object] = [r.image_size, kind, *(f"{m.phase(i) * 1e3:.0f}" for i in range(3))]
    return cells + [f"{m.total().min * 1e3:.0f}", _mb(m.saved_attention_map_bytes), f"{m.first_loss:.4f}"]


def tables(rows: Sequence[Row]) -> str:
    main_rows = [_row(r, kind) for r in rows for kind in r.measured]
    detail = [_detail(r, kind) for r in rows for kind in r.measured]
    return markdown_table(HEAD, main_rows) + "\n\n" + markdown_table(DETAIL_HEAD, detail)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="image sizes (default 224 384; quick 32 64)"
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--plan", choices=PLANS, default="T-T-T", help="what is trained (default: everything)")
    p.add_argument("--checkpointing", action="store_true", help="also ours with gradient checkpointing")
    p.add_argument("--bf16", action="store_true", help="also ours under bf16 autocast (theirs stays fp32)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (median and IQR over them)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before measuring (at least 1)")
    p.add_argument("--question-len", type=int, default=35)
    p.add_argument("--answer-len", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--quick", action="store_true", help="the tiny architecture: a smoke test in seconds")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([32, 64] if args.quick else [224, 384])
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = f"fp32 (ours+bf16: bf16 autocast), batch {args.batch}, question {args.question_len} / answer {args.answer_len} tokens"
    setup += f", plan {args.plan}, fused AdamW, {args.steps} timed steps per model"
    print(header("benchmarks.step_vs_transformers", argv, args.threads, setup), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mile-bench-") as tmp:
        for size in args.sizes:
            rows.append(run_size(args, size, Path(tmp)))
            print(f"done {size} px", flush=True)
    print(f"load average at the end: {load_average()}\n")
    print(tables(rows))
    return rows


if __name__ == "__main__":
    main()
