"""mile-small in fp32 and in bf16 autocast, through the engine's own code: training samples/s and peak RSS, and
beam-search evaluation questions/s; then blip-base T-T-LoRA_r8 at 224 px, ours in fp32 and bf16 against
transformers' BlipForQuestionAnswering + peft in fp32 (`step_vs_transformers.py --bf16`).

Training is `mile.engine.train.Trainer.step` on SLAKE-EN train batches from the Trainer's own loader (images
decoded and resized, questions and answers tokenised, as in a run; with the feature cache for a frozen ViT, warmed
first, as from the second epoch on), AdamW fused, gradient clipping on. A timed training step is fetching the
batch plus the step; the fetch is also reported alone. Evaluation is `mile.engine.evaluate.evaluate_splits` on the
first SLAKE-EN validate questions as a run's final evaluation does it (LoRA merged, 3 beams, at most 10 tokens),
encoding every image (no feature cache).

Per (plan, image size): two freshly spawned processes, fp32 and bf16, built one after the other from the same
seed (same weights, same batches); then their timed training steps, and after them their evaluation passes, are
interleaved in rotating order so that machine noise falls on both. Median and IQR over the repeats, and the speed-up
bf16 / fp32 of the medians. Peak RSS is each process's high-water mark over its timed training steps (VmHWM, reset
after warm-up), i.e. weights, gradients, optimizer state and activations. The first losses of the two must agree
to 1 % (a check that both did the same work).

    python -m benchmarks.precision                                # the issue's grid: 3 plans x 112 / 224 px
    python -m benchmarks.precision --plans T-T-T --sizes 224      # one pair
    python -m benchmarks.precision --quick                        # tiny model on the bundled demo data
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from benchmarks.common import (
    GB,
    Summary,
    Worker,
    header,
    interleave,
    load_average,
    markdown_table,
    peak_rss_bytes,
    reset_peak_rss,
    shared_dir,
)

PLANS = ("F-T-T", "T-T-T", "T-T-LoRA_r8")
# precision, then any of: +compile (train.compile), +tcmalloc (LD_PRELOAD), +glibc (MILE_MALLOC=default: glibc's
# own settings instead of ours, engine/memory.py). Speed-ups are against the first variant.
VARIANTS = ("fp32", "bf16")
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"  # Debian's libtcmalloc-minimal4
SLAKE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "slake" / "mile-small.yaml"


@dataclass(frozen=True)
class Job:
    plan: str
    image_size: int
    variant: str
    batch: int
    steps: int
    warmup: int
    eval_questions: int
    threads: int
    quick: bool
    out: str


def job_config(job: Job):
    """The run config the worker builds: configs/slake/mile-small.yaml (or the tiny demo) with the job's plan,
    size, batch and precision, paths into $MILE_SHARED, no logging in the timed steps."""
    from mile.config import load_config
    from mile.tuning import parse_plan_notation

    needed = max(job.batch * (job.warmup + job.steps + 1), job.eval_questions)
    precision, *extras = job.variant.split("+")
    common = [f"train.batch_size={job.batch}", f"train.mixed_precision={precision}"]
    common += [f"train.compile={str('compile' in extras).lower()}"]
    common += ["train.log_every=1000000", "train.seed=0", f"data.limit={needed}", f"run.output_dir={job.out}"]
    if job.quick:
        overrides = ["model.size=tiny", "data.dataset=demo", "data.eval_splits=[test]", "eval.batch_size=64"]
        cfg = load_config(None, [*overrides, f"model.image_size={job.image_size}", *common])
    else:
        root = shared_dir()
        paths = [f"model.init.vision={root / 'weights/dinov2-small'}", f"data.root={root / 'data/slake'}"]
        paths += [f"model.init.text={root / 'weights/minilm-l6-h384-uncased'}"]
        cfg = load_config(SLAKE_CONFIG, [*paths, f"model.image_size={job.image_size}", *common])
    return cfg.model_copy(update={"plan": parse_plan_notation(job.plan)})


class Bench:
    """One model in one precision, set up as `train_run` sets it up, stepped and evaluated on demand."""

    def __init__(self, job: Job):
        from accelerate.utils import set_seed

        from mile.engine.accelerator import make_accelerator
        from mile.engine.build import build_session
        from mile.engine.datasets import load_split, load_train
        from mile.engine.features import feature_cache
        from mile.engine.memory import tune_memory
        from mile.engine.precision import resolve_precision
        from mile.engine.rundir import RunDir
        from mile.engine.train import Trainer

        self.cfg = cfg = job_config(job)
        self.precision = resolve_precision(cfg.train.mixed_precision, "cpu")
        self.accelerator = make_accelerator(cfg, self.precision)
        self.memory = tune_memory()
        set_seed(cfg.train.seed)
        self.session = build_session(cfg)
        self.run = RunDir(Path(job.out) / f"{job.plan}-{job.image_size}-{job.variant}")
        self.run.path.mkdir(parents=True, exist_ok=True)
        split = cfg.data.eval_splits[0]
        evaluation = load_split(cfg, split)
        evaluation.samples = evaluation.samples[: job.eval_questions]
        self.evals = {split: evaluation}
        cache = feature_cache(cfg, self.session, self.precision)
        self.trainer = Trainer(cfg, self.session, self.run, self.accelerator, cache, load_train(cfg).samples)
        if cache is not None:  # steady state: every training image's features computed once already
            for batch in self.trainer.loader:
                cache.cached(batch["images"], self.accelerator.device)
        self.trainer.model.train()
        self.batches = iter(self.trainer.loader)
        self.first_loss: float | None = None

    def next_batch(self) -> dict:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.trainer.loader)
            return next(self.batches)

    def train_step(self) -> tuple[float, float]:
        """(seconds to fetch the batch, seconds of fetch + step)."""
        start = time.perf_counter()
        batch = self.next_batch()
        fetched = time.perf_counter()
        if self.first_loss is None:
            self.first_loss = self.loss(batch)
        self.trainer.step(batch)
        return fetched - start, time.perf_counter() - start

    @torch.no_grad()
    def loss(self, batch: dict) -> float:
        from mile.engine.batches import model_inputs

        inputs = model_inputs(batch)
        if self.trainer.cache is not None:
            inputs.update(self.trainer.cache.inputs(batch["images"], self.accelerator.device))
        return float(self.trainer.model(**inputs).loss)

    def evaluate(self) -> float:
        from mile.engine.evaluate import evaluate_splits

        start = time.perf_counter()
        evaluate_splits(self.cfg, self.session, self.evals, self.run, self.accelerator, merge=True)
        self.trainer.model.train()
        return time.perf_counter() - start


def worker(job: Job, conn: Connection) -> None:
    """A fresh process: 'build' (then warm up), 'train' (one timed step), 'peak', 'eval' (one timed pass)."""
    try:
        torch.set_num_threads(job.threads)
        conn.recv()  # our turn to build: builds never share the CPU
        start = time.perf_counter()
        bench = Bench(job)
        for _ in range(job.warmup):  # with train.compile, the first steps compile
            bench.train_step()
        ready = time.perf_counter() - start
        bench.evaluate()  # warm-up of the evaluation path too
        reset_peak_rss()
        info = {"first_loss": bench.first_loss, "used": bench.precision.used, "ready_s": ready}
        conn.send(("ok", {**info, "malloc": bench.memory["malloc"]}))
        while (message := conn.recv()) != "stop":
            if message == "train":
                conn.send(("ok", bench.train_step()))
            elif message == "peak":
                conn.send(("ok", peak_rss_bytes()))
            else:
                conn.send(("ok", bench.evaluate()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


@dataclass
class Pair:
    """The variants (fp32, bf16, ...) of one (plan, image size)."""

    plan: str
    image_size: int
    batch: int
    info: dict[str, dict]  # variant -> {"first_loss", "used", "ready_s": build + warm-up seconds}
    steps: dict[str, list[tuple[float, float]]]  # variant -> (fetch s, step s) per timed step
    peak: dict[str, int]
    evals: dict[str, list[float]]  # variant -> seconds per evaluation pass
    eval_questions: int

    def samples_per_s(self, variant: str) -> Summary:
        return Summary.of([self.batch / total for _, total in self.steps[variant]])

    def fetch(self, variant: str) -> Summary:
        return Summary.of([fetch for fetch, _ in self.steps[variant]])

    def questions_per_s(self, variant: str) -> Summary:
        return Summary.of([self.eval_questions / t for t in self.evals[variant]])


def run_pair(args: argparse.Namespace, plan: str, size: int, out: Path) -> Pair:
    jobs = {
        v: Job(plan, size, v, args.batch, args.steps, args.warmup, args.eval_questions, args.threads,
               args.quick, str(out))
        for v in args.variants
    }  # fmt: skip
    ctx = mp.get_context("spawn")
    workers = {v: start_worker(ctx, f"{plan} {size} px {v}", job) for v, job in jobs.items()}
    try:
        info = {p: w.call("build") for p, w in workers.items()}
        steps = interleave({p: (lambda w=w: w.call("train")) for p, w in workers.items()}, args.steps)
        peak = {p: w.call("peak") for p, w in workers.items()}
        evals = interleave({p: (lambda w=w: w.call("eval")) for p, w in workers.items()}, args.eval_rounds)
    finally:
        for w in workers.values():
            w.stop()
    pair = Pair(plan, size, args.batch, info, steps, peak, evals, args.eval_questions)
    check(pair)
    return pair


def start_worker(ctx, name: str, job: Job) -> Worker:
    """A spawned worker whose environment selects the variant's allocator (read when the process starts)."""
    extras = job.variant.split("+")[1:]
    if "tcmalloc" in extras and not Path(TCMALLOC).is_file():
        raise SystemExit(
            f"variant {job.variant}: {TCMALLOC} not found (Debian: apt install libtcmalloc-minimal4)"
        )
    env = {"LD_PRELOAD": TCMALLOC if "tcmalloc" in extras else None}
    env["MILE_MALLOC"] = "default" if "glibc" in extras else None
    before = {key: os.environ.get(key) for key in env}
    try:
        _set_environment(env)
        return Worker(ctx, name, worker, (job,))
    finally:
        _set_environment(before)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def check(pair: Pair) -> None:
    where = f"{pair.plan} {pair.image_size} px"
    for variant, info in pair.info.items():
        if info["used"] != variant.split("+")[0]:
            raise RuntimeError(f"{where}: the {variant} worker computed in {info['used']}")
        first = next(iter(pair.info))
        a, b = pair.info[first]["first_loss"], info["first_loss"]
        if abs(a - b) > 0.01 * abs(a):
            raise RuntimeError(f"{where}: first losses {a} ({first}) vs {b} ({variant})")


HEAD = ["plan", "px", "variant", "train samples/s (IQR)", "train speed-up", "batch fetch ms"]
HEAD += ["peak RSS GiB", "eval questions/s (IQR)", "eval speed-up", "first loss", "build + warm-up s"]


def _rate(s: Summary) -> str:
    return f"{s.median:.2f} ± {s.iqr:.2f}"


def rows(pairs: Sequence[Pair]) -> list[list[object]]:
    out = []
    for pair in pairs:
        first = next(iter(pair.info))
        base_train, base_eval = pair.samples_per_s(first).median, pair.questions_per_s(first).median
        for v in pair.info:
            train, evaluation = pair.samples_per_s(v), pair.questions_per_s(v)
            cells: list[object] = [pair.plan, pair.image_size, v, _rate(train)]
            cells += [f"{train.median / base_train:.2f}x", f"{pair.fetch(v).median * 1e3:.0f}"]
            cells += [f"{pair.peak[v] / GB:.2f}", _rate(evaluation), f"{evaluation.median / base_eval:.2f}x"]
            out.append(cells + [f"{pair.info[v]['first_loss']:.4f}", f"{pair.info[v]['ready_s']:.0f}"])
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plans", nargs="+", default=list(PLANS), help="plans in the paper's notation")
    p.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="image sizes (default 112 224; quick 32)"
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per precision")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--eval-questions", type=int, default=64, help="questions per evaluation pass")
    p.add_argument("--eval-rounds", type=int, default=3, help="timed evaluation passes per precision")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    blip = "batch of the blip-base comparison with transformers (0: skip)"
    p.add_argument("--blip-batch", type=int, default=4, help=blip)
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        help="e.g. fp32 bf16 bf16+compile "
        "bf16+tcmalloc bf16+glibc (the first is the baseline of the speed-ups)",
    )
    p.add_argument("--quick", action="store_true", help="the tiny model on the demo data: a smoke test")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([32] if args.quick else [112, 224])
    return args


def main(argv: Sequence[str] | None = None) -> list[Pair]:
    args = parse_args(argv)
    what = f"batch {args.batch}, {args.steps} timed steps and {args.eval_rounds} evaluations of "
    what += f"{args.eval_questions} questions per precision"
    print(header("benchmarks.precision", argv, args.threads, what), flush=True)
    pairs = []
    with tempfile.TemporaryDirectory(prefix="mile-precision-") as tmp:
        for plan in args.plans:
            for size in args.sizes:
                pairs.append(run_pair(args, plan, size, Path(tmp)))
                print(f"done {plan} {size} px", flush=True)
    print(f"load average at the end: {load_average()}\n")
    print(markdown_table(HEAD, rows(pairs)) + "\n")
    allocators = {v: info["malloc"] for pair in pairs for v, info in pair.info.items()}
    print("malloc: " + "; ".join(f"{v}: {a}" for v, a in allocators.items()) + "\n", flush=True)
    if args.blip_batch:
        blip_vs_transformers(args)
    return pairs


def blip_vs_transformers(args: argparse.Namespace) -> None:
    """blip-base T-T-LoRA_r8 at 224 px: ours in fp32 and bf16 against transformers + peft in fp32."""
    from benchmarks import step_vs_transformers

    argv = ["--sizes", "32" if args.quick else "224", "--batch", str(args.blip_batch)]
    argv += ["--plan", "T-T-LoRA_r8", "--bf16", "--steps", str(args.steps), "--threads", str(args.threads)]
    step_vs_transformers.main(argv + ["--quick"] * args.quick)


if __name__ == "__main__":
    main()
