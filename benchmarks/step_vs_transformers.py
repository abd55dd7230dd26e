"""One training step (forward + backward + AdamW) of our MileModel vs transformers' BlipForQuestionAnswering.

Both models get the blip-base architecture (or `tiny` with --quick) and the very same random weights: a
transformers model is built, saved with save_pretrained and loaded by both sides. Dropout is 0 in both, the
label smoothing is the same, masks are all ones (no padding), so the two do identical arithmetic; the first
losses are checked to agree. Each model lives in its own fresh spawned process, which measures its
memory alone (peak RSS growth of one step, bytes saved for backward); the parent then interleaves their
timed steps (ours, theirs, theirs, ours, ...) so that machine noise hits both alike.

    python -m benchmarks.step_vs_transformers --sizes 224 384 --batch 2 --steps 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from benchmarks.common import (
    MB,
    SavedTensorMeter,
    Summary,
    Worker,
    machine,
    markdown_table,
    peak_rss_bytes,
    reset_peak_rss,
)
from mile.model.checkpoints import load_hf_blip
from mile.model.checkpoints.hf_blip import blip_config
from mile.model.config import MileConfig, size_config

if TYPE_CHECKING:
    from transformers import BlipConfig

KINDS = ("ours", "theirs")


@dataclass(frozen=True)
class Job:
    """What one worker process builds and runs."""

    directory: str
    image_size: int
    batch: int
    question_len: int
    answer_len: int
    warmup: int
    threads: int
    heads: int
    head_dim: int


@dataclass
class Measured:
    """One model at one size: memory figures from its fresh process and its timed steps (seconds)."""

    first_loss: float
    saved_bytes: int
    saved_attention_map_bytes: int
    peak_rss_growth: int
    steps: list[tuple[float, float, float]]  # (forward, backward, optimizer) per timed step

    def total(self) -> Summary:
        return Summary.of([sum(s) for s in self.steps])

    def phase(self, i: int) -> float:
        return Summary.of([s[i] for s in self.steps]).median


@dataclass
class Row:
    image_size: int
    batch: int
    ours: Measured
    theirs: Measured


def architecture(quick: bool, image_size: int) -> MileConfig:
    """The benchmarked architecture with every dropout at 0 (train mode then does no random work)."""
    cfg = size_config("tiny" if quick else "blip-base", image_size)
    return cfg.replace(
        vision=replace(cfg.vision, dropout=0.0, drop_path=0.0),
        text=replace(cfg.text, dropout=0.0, attn_dropout=0.0, drop_path=0.0),
    )


def hf_config(cfg: MileConfig) -> BlipConfig:
    """transformers' BlipConfig of the same architecture (no dropout)."""
    from transformers import BlipConfig  # imported where needed: our worker process never loads transformers

    v, t = cfg.vision, cfg.text
    text = dict(vocab_size=t.vocab_size, hidden_size=t.width, encoder_hidden_size=v.width)
    text.update(intermediate_size=t.mlp_dim, num_hidden_layers=t.depth, num_attention_heads=t.heads)
    text.update(max_position_embeddings=t.max_positions, layer_norm_eps=t.layer_norm_eps)
    text.update(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, label_smoothing=cfg.label_smoothing
    )
    text.update(pad_token_id=cfg.pad_token_id, bos_token_id=cfg.bos_token_id, sep_token_id=cfg.eos_token_id)
    vision = dict(hidden_size=v.width, intermediate_size=v.mlp_dim, num_hidden_layers=v.depth)
    vision.update(num_attention_heads=v.heads, image_size=v.image_size, patch_size=v.patch_size)
    vision.update(layer_norm_eps=v.layer_norm_eps, attention_dropout=0.0)
    return BlipConfig(text_config=text, vision_config=vision)


def save_checkpoint(cfg: MileConfig, directory: Path) -> None:
    """Random transformers weights of `cfg`, saved where both sides load them; checks the architectures agree."""
    from transformers import BlipForQuestionAnswering

    torch.manual_seed(0)
    BlipForQuestionAnswering(hf_config(cfg)).save_pretrained(directory)
    ours = blip_config(directory, cfg.vision.image_size)
    if ours != cfg:
        raise RuntimeError(f"the saved BLIP config reads back as\n{ours}\nnot as the benchmarked\n{cfg}")


def make_batch(job: Job, cfg: MileConfig) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    b, s = job.batch, job.image_size
    question = torch.randint(1000, 30000, (b, job.question_len), generator=g)
    question[:, 0] = cfg.enc_token_id
    answer = torch.randint(1000, 30000, (b, job.answer_len), generator=g)
    answer[:, 0] = cfg.bos_token_id
    pixels = torch.randn(b, 3, s, s, generator=g)
    return dict(pixels=pixels, question=question, answer=answer)


def build(kind: str, job: Job) -> tuple[nn.Module, Callable[[], Tensor]]:
    """The model (train mode) and a closure computing its training loss on a fixed batch."""
    if kind == "ours":
        model, _, _ = load_hf_blip(job.directory, image_size=job.image_size)
    else:
        from transformers import BlipForQuestionAnswering

        model = BlipForQuestionAnswering.from_pretrained(job.directory)
    model.train()
    cfg = blip_config(Path(job.directory), job.image_size)
    x = make_batch(job, cfg)
    q_mask, a_mask = torch.ones_like(x["question"]), torch.ones_like(x["answer"])

    def ours_loss() -> Tensor:
        return model(x["question"], q_mask, x["answer"], a_mask, pixels=x["pixels"]).loss

    def theirs_loss() -> Tensor:
        return model(
            input_ids=x["question"],
            pixel_values=x["pixels"],
            attention_mask=q_mask,
            decoder_input_ids=x["answer"],
            decoder_attention_mask=a_mask,
            labels=x["answer"],
        ).loss

    return model, ours_loss if kind == "ours" else theirs_loss


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
    """Peak RSS growth of one step (after warm-up), then the bytes saved for backward in another step."""
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
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        first_loss = train_step(loss_fn, opt)[0]
        for _ in range(job.warmup - 1):
            train_step(loss_fn, opt)
        conn.send(("ok", dict(first_loss=first_loss, **measure_memory(model, loss_fn, opt, job))))
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
    job = Job(str(directory), warmup=max(args.warmup, 1), threads=args.threads, **sizes)
    assert cfg.vision.heads == cfg.text.heads and cfg.vision.width == cfg.text.width
    ctx = mp.get_context("spawn")
    # Both import in parallel, then build, warm up and measure memory in turn, then alternate timed steps.
    workers = [Worker(ctx, kind, worker, (kind, job)) for kind in KINDS]
    try:
        memory = [w.call("build") for w in workers]
        steps: list[list[Any]] = [[], []]
        for i in range(args.steps):
            for k in (0, 1) if i % 2 == 0 else (1, 0):
                steps[k].append(workers[k].call("step"))
    finally:
        for w in workers:
            w.stop()
        shutil.rmtree(directory, ignore_errors=True)
    ours, theirs = (Measured(steps=s, **m) for s, m in zip(steps, memory, strict=True))
    if abs(ours.first_loss - theirs.first_loss) > 1e-3 * max(1.0, abs(theirs.first_loss)):
        raise RuntimeError(f"first losses differ: {ours.first_loss} (ours) vs {theirs.first_loss} (theirs)")
    return Row(image_size, args.batch, ours, theirs)


HEAD = ["px", "batch", "ours ms (IQR)", "theirs ms (IQR)", "speed theirs/ours", "ours saved MiB"]
HEAD += ["theirs saved MiB", "memory theirs/ours", "ours peak RSS +MiB", "theirs peak RSS +MiB"]
DETAIL_HEAD = ["px", "model", "forward ms", "backward ms", "AdamW ms", "fastest step ms"]
DETAIL_HEAD += ["saved attention maps MiB", "first loss"]


def _ms(s: Summary) -> str:
    return f"{s.median * 1e3:.0f} ± {s.iqr * 1e3:.0f}"


def _mb(n: int) -> str:
    return f"{n / MB:.0f}"


def _row(r: Row) -> list[object]:
    o, t = r.ours, r.theirs
    cells: list[object] = [r.image_size, r.batch, _ms(o.total()), _ms(t.total())]
    cells += [f"{t.total().median / o.total().median:.2f}x", _mb(o.saved_bytes), _mb(t.saved_bytes)]
    cells += [f"{t.saved_bytes / o.saved_bytes:.2f}x", _mb(o.peak_rss_growth), _mb(t.peak_rss_growth)]
    return cells


def _detail(r: Row, kind: str, m: Measured) -> list[object]:
    cells: list[object] = [r.image_size, kind, *(f"{m.phase(i) * 1e3:.0f}" for i in range(3))]
    return cells + [f"{m.total().min * 1e3:.0f}", _mb(m.saved_attention_map_bytes), f"{m.first_loss:.4f}"]


def tables(rows: Sequence[Row]) -> str:
    detail = [_detail(r, kind, m) for r in rows for kind, m in (("ours", r.ours), ("theirs", r.theirs))]
    return markdown_table(HEAD, [_row(r) for r in rows]) + "\n\n" + markdown_table(DETAIL_HEAD, detail)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="image sizes (default 224 384; quick 32 64)"
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (median and IQR over them)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before measuring (at least 1)")
    p.add_argument("--question-len", type=int, default=35)
    p.add_argument("--answer-len", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="the tiny architecture: a smoke test in seconds")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([32, 64] if args.quick else [224, 384])
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, load = [], os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mile-bench-") as tmp:
        for size in args.sizes:
            rows.append(run_size(args, size, Path(tmp)))
            print(f"done {size} px", flush=True)
    setup = f"batch {args.batch}, question {args.question_len} / answer {args.answer_len} tokens"
    print(f"{machine()}; {args.threads} threads, fp32, {setup}, {args.steps} timed steps per model")
    loads = [" / ".join(f"{x:.1f}" for x in la) for la in (load, os.getloadavg())]
    print(f"load average (1 / 5 / 15 min): {loads[0]} at start, {loads[1]} at the end\n")
    print(tables(rows))
    return rows


if __name__ == "__main__":
    main()
