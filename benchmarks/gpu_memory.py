"""GPU memory and step time of the paper's three memory rows, next to the paper's figures.

blip-base at 480 px, batch 20, random init (the weights do not change memory or time), LoRA r=8 on the decoder's
query/value (self + cross attention), AdamW over the trainable parameters only. For each plan and precision:
peak allocated and reserved CUDA memory over the training steps, and the median step time. The paper reports
5.21 GB (F-F-LoRA), 7.45 GB (F-T-LoRA) and 28.11 GB (T-T-LoRA) on its GPU; it does not say how it measured
(allocated vs reserved vs nvidia-smi), so both of ours are printed.

    python benchmarks/gpu_memory.py [--batch 20] [--size 480] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.tuning import apply_plan, count_parameters

PAPER_GB = {"F-F-LoRA_r8": 5.21, "F-T-LoRA_r8": 7.45, "T-T-LoRA_r8": 28.11}


def batch(n: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    q = torch.randint(1000, 30000, (n, 24), generator=g)
    a = torch.randint(1000, 30000, (n, 6), generator=g)
    q[:, 0], a[:, 0] = 30523, 30522
    return {
        "question_ids": q.to(device),
        "question_mask": torch.ones_like(q).to(device),
        "answer_ids": a.to(device),
        "answer_mask": torch.ones_like(a).to(device),
        "pixels": torch.randn(n, 3, size, size, generator=g).to(device),
    }


def measure(plan: str, precision: str, args: argparse.Namespace, checkpointing: bool = False) -> dict:
    device = torch.device("cuda")
    torch.manual_seed(0)
    with device:
        model = MileModel(size_config("blip-base", args.size))
    apply_plan(model, plan)
    for tower in ("vision", "text_encoder", "text_decoder"):
        model.tower(tower).gradient_checkpointing = checkpointing
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    inputs = batch(args.batch, args.size, device)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    times = []
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    counts = count_parameters(model)
    row = {
        "plan": plan + (" +ckpt" if checkpointing else ""),
        "precision": precision,
        "trainable_pct": round(counts["trainable_pct"], 3),
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2),
        "step_ms": round(1000 * statistics.median(times), 1),
        "paper_gb": PAPER_GB[plan] if not checkpointing else "",
    }
    del model, optimizer, inputs, loss
    torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, batch {args.batch}, {args.size} px"
    )
    rows = [measure(plan, precision, args) for plan in PAPER_GB for precision in ("fp32", "bf16")]
    rows += [measure("T-T-LoRA_r8", precision, args, checkpointing=True) for precision in ("fp32", "bf16")]
    print("| plan | precision | trainable % | peak allocated GB | peak reserved GB | step ms | paper GB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['plan']} | {r['precision']} | {r['trainable_pct']} | {r['peak_allocated_gb']} | "
            f"{r['peak_reserved_gb']} | {r['step_ms']} | {r['paper_gb']} |"
        )
    return rows


if __name__ == "__main__":
    main()
