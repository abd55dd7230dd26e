"""Epoch time of frozen-ViT plans, and of a plan that trains only the ViT's top two blocks (the cache keeps the
states below them), with and without the vision feature cache (train.feature_cache memory / none).

Real training through the engine (`mile.engine.train.train_run`): mile-small composed from the shared DINOv2-small
and MiniLM weights at 224 px, the first N questions of VQA-RAD's train split (many questions per image), fused
AdamW, no evaluation. Each epoch's time comes from train_log.jsonl (logged once per epoch, at its last batch:
samples of the epoch / seconds since the epoch began; checkpoint writing is outside it). The first epoch fills the
cache (cold), the later ones read it (warm). Cached and uncached runs alternate (rotating order) so that a busy
spell of the machine does not fall on one variant only.

    python -m benchmarks.feature_cache --questions 256 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import Summary, header, interleave, load_average, markdown_table, shared_dir
from mile.config import Config, load_config
from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.tuning import PlanConfig, parse_plan_notation

# plan.vision {method: blocks, layers: [-2, -1]} ([-1] on the 2-block tiny ViT), both text towers trained
TOP_BLOCKS = "ViT top blocks-T-T"
PLANS = ("F-T-LoRA_r8", "F-F-LoRA_r8", TOP_BLOCKS)
CACHES = ("none", "memory")


@dataclass
class Epochs:
    """Per-epoch seconds of each repeat of one (plan, cache) variant, and the cache's counters."""

    plan: str
    cache: str
    runs: list[list[float]]
    stats: dict

    def cold(self) -> Summary:
        return Summary.of([r[0] for r in self.runs])

    def warm(self) -> Summary:
        return Summary.of([t for r in self.runs for t in r[1:]])


def make_config(args: argparse.Namespace, plan: str, cache: str, out: Path) -> Config:
    root = shared_dir()
    if args.quick:
        model = ["model.size=tiny", "model.init.kind=random", "model.image_size=32"]
    else:
        model = ["model.size=mile-small", f"model.image_size={args.size}", "model.init.kind=compose"]
        model += [f"model.init.vision={root / 'weights/dinov2-small'}"]
        model += [f"model.init.text={root / 'weights/minilm-l6-h384-uncased'}"]
    data = ["data.dataset=vqa_rad", f"data.root={root / 'data/vqa_rad'}", f"data.limit={args.questions}"]
    data += ["data.eval_splits=[]"]
    train = [f"train.epochs={args.epochs}", f"train.batch_size={args.batch}", f"train.feature_cache={cache}"]
    train += ["train.log_every=100000", "train.lr=5e-5", "train.lr_adapters=1e-3"]
    cfg = load_config(None, [*model, *data, *train, f"run.output_dir={out}", f"run.name={plan}-{cache}"])
    cfg.plan = plan_config(plan, args.quick)
    return cfg


def plan_config(plan: str, quick: bool) -> PlanConfig:
    if plan != TOP_BLOCKS:
        return parse_plan_notation(plan)
    vision = {"method": "blocks", "layers": [-1] if quick else [-2, -1]}
    return PlanConfig(vision=vision, text_encoder="full", text_decoder="full")


def train_once(args: argparse.Namespace, plan: str, cache: str, out: Path) -> tuple[list[float], dict]:
    """Seconds of each epoch of one fresh run, and its cache counters."""
    cfg = make_config(args, plan, cache, out)
    run = RunDir(Path(cfg.run.output_dir) / cfg.run.name)
    train_run(cfg, run, resume=False)
    stats = json.loads((run / "train_stats.json").read_text())
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    per_epoch = stats["samples"] / stats["epochs"]
    times = [per_epoch / r["samples_per_s"] for r in records]
    if len(times) != args.epochs:
        raise RuntimeError(f"expected one log record per epoch, got {len(records)}: {records}")
    run_cleanup(run)
    return times, stats.get("feature_cache") or {}


def run_cleanup(run: RunDir) -> None:
    import shutil

    shutil.rmtree(run.path, ignore_errors=True)


def measure(args: argparse.Namespace, out: Path) -> list[Epochs]:
    calls = {
        (plan, cache): (lambda p=plan, c=cache: train_once(args, p, c, out))
        for plan in args.plans
        for cache in (CACHES if args.plans.index(plan) % 2 == 0 else CACHES[::-1])
    }
    results = interleave(calls, args.repeats)
    return [
        Epochs(plan, cache, [times for times, _ in runs], runs[-1][1])
        for (plan, cache), runs in sorted(results.items())
    ]


def table(rows: Sequence[Epochs]) -> str:
    head = ["plan", "feature cache", "epoch 1 (cold) s", "epochs 2+ (warm) s (IQR)", "cold speed-up"]
    head += ["warm speed-up", "cache hits / misses per run"]
    base = {r.plan: r for r in rows if r.cache == "none"}
    lines = []
    for r in rows:
        b = base[r.plan]
        cells: list[object] = [r.plan, r.cache, f"{r.cold().median:.1f} ± {r.cold().iqr:.1f}"]
        cells += [f"{r.warm().median:.1f} ± {r.warm().iqr:.1f}" if r.runs[0][1:] else ""]
        cells += [f"{b.cold().median / r.cold().median:.1f}x"]
        cells += [f"{b.warm().median / r.warm().median:.1f}x" if r.runs[0][1:] else ""]
        cells += [f"{r.stats['hits']} / {r.stats['misses']}" if r.stats else ""]
        lines.append(cells)
    return markdown_table(head, lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=None, help="first N VQA-RAD train questions (256)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="runs of each variant")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny random model, 16 questions: a smoke test")
    p.add_argument("--plans", nargs="+", choices=PLANS, default=list(PLANS), help="plans to measure (all)")
    args = p.parse_args(argv)
    args.questions = args.questions or (16 if args.quick else 256)
    return args


def main(argv: Sequence[str] | None = None) -> list[Epochs]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    what = f"{'tiny' if args.quick else 'mile-small'}, {args.size} px, {args.questions} VQA-RAD questions, "
    what += f"batch {args.batch}, {args.epochs} epochs, {args.repeats} runs per variant, fused AdamW"
    print(header("benchmarks.feature_cache", argv, args.threads, what), flush=True)
    with tempfile.TemporaryDirectory(prefix="mile-cache-bench-") as tmp:
        rows = measure(args, Path(tmp))
    print(f"load average at the end: {load_average()}\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
