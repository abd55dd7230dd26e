"""Answer-generation throughput: beam search with our KV cache vs the same search recomputing the decoder over
the whole prefix at every step, and LoRA adapters merged vs unmerged.

mile-small (random init) at 224 px, one batch of questions (24 tokens), 10 new tokens, fp32, eval mode. Every
variant generates from pixels, so vision and JTM encoding are in every time; "encode only" times them alone,
and "decode" is a variant's time minus that. The no-cache baseline runs our own greedy / beam search
(mile.model.generation's `_greedy` / `_beam_search`, the very same scoring and stopping) over a decoder that keeps
no keys and values: each step re-embeds the whole prefix and recomputes every layer, cross-attention keys and
values included (what `generate(use_cache=False)` does in transformers). So cached and uncached do the same
search, and their answers are compared. The LoRA variants use a second model with LoRA r=8 in all three towers
(LoRA-LoRA-LoRA, random non-zero B), merged (`handle.merge()`) or not; merging is outside the timed region.

    python -m benchmarks.generation --batch 32 --size 224 --rounds 5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import Summary, header, interleave, load_average, markdown_table, timed
from mile.model.config import size_config
from mile.model.generation import GenerationConfig, _beam_search, _Decoder, _greedy, generate
from mile.model.mile import MileModel
from mile.tuning import TuningHandle, apply_plan

LORA_PLAN = "LoRA_r8-LoRA_r8-LoRA_r8"
ENCODE = "encode only (vision + JTM)"


class RecomputeDecoder(_Decoder):
    """No KV cache: each step runs the decoder over the whole prefix and keeps only the last position."""

    def __init__(self, model: MileModel, question_states: Tensor, question_mask: Tensor, min_new_tokens: int):
        super().__init__(model, question_states, question_mask, min_new_tokens)
        self.cache = []
        self.prefix: Tensor | None = None  # (N, t) tokens so far, [DEC] first

    def step(self, tokens: Tensor) -> Tensor:
        new = tokens[:, None]
        self.prefix = new if self.prefix is None else torch.cat([self.prefix, new], dim=1)
        states = self.decoder(self.prefix, context=self.context, context_mask=self.context_mask)
        log_probs = F.log_softmax(self.decoder.logits(states[:, -1]).float(), dim=-1)
        if self.produced < self.min_new_tokens:
            log_probs[:, self.model.config.eos_token_id] = float("-inf")
        self.produced += 1
        return log_probs

    def reorder(self, index: Tensor) -> None:
        self.prefix = None if self.prefix is None else self.prefix.index_select(0, index)
        self.context = self.context.index_select(0, index)
        self.context_mask = self.context_mask.index_select(0, index)


@torch.no_grad()
def generate_no_cache(model: MileModel, q: Tensor, q_mask: Tensor, pixels: Tensor, config: GenerationConfig):
    """`generate` with the recomputing decoder (same search, same answers up to rounding)."""
    states = model.encode_question(q, q_mask, model.encode_image(pixels))
    decoder = RecomputeDecoder(model, states, q_mask.bool(), config.min_new_tokens)
    first = decoder.step(torch.full((q.shape[0],), model.config.bos_token_id))
    if config.num_beams == 1:
        return _greedy(decoder, first, model.config, config.max_new_tokens)
    return _beam_search(decoder, first, model.config, config)[0][:, 0]


def build(args: argparse.Namespace) -> tuple[MileModel, MileModel, TuningHandle]:
    """The plain model and a copy of it with LoRA in every tower (non-zero B, so merging changes weights)."""
    name = "tiny" if args.quick else "mile-small"
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(MileModel(size_config(name, args.size)).eval())
    handle = apply_plan(models[1], LORA_PLAN)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in models[1].named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return models[0], models[1].eval(), handle


Variant = tuple[Callable[[], None], Callable[[], Tensor]]  # (untimed setup, timed call)


def variants(args: argparse.Namespace, inputs: dict[str, Tensor]) -> dict[str, Variant]:
    plain, tuned, handle = build(args)
    beam = GenerationConfig(num_beams=args.beams, max_new_tokens=args.tokens)
    greedy = GenerationConfig(num_beams=1, max_new_tokens=args.tokens)

    def encode(model: MileModel) -> Tensor:
        with torch.no_grad():
            image = model.encode_image(inputs["pixels"])
            return model.encode_question(inputs["question_ids"], inputs["question_mask"], image)

    def lora(merged: bool, fn: Callable[[], Tensor]) -> Variant:
        return (handle.merge if merged else handle.unmerge), fn

    def plain_(fn: Callable[[], Tensor]) -> Variant:
        return (lambda: None), fn

    no_cache_args = (plain, inputs["question_ids"], inputs["question_mask"], inputs["pixels"])
    b = f"beam {args.beams}"
    return {
        f"{b}, KV cache": plain_(lambda: generate(plain, **inputs, config=beam)),
        f"{b}, no cache": plain_(lambda: generate_no_cache(*no_cache_args, beam)),
        "greedy, KV cache": plain_(lambda: generate(plain, **inputs, config=greedy)),
        "greedy, no cache": plain_(lambda: generate_no_cache(*no_cache_args, greedy)),
        f"{b}, KV cache, LoRA unmerged": lora(False, lambda: generate(tuned, **inputs, config=beam)),
        f"{b}, KV cache, LoRA merged": lora(True, lambda: generate(tuned, **inputs, config=beam)),
        ENCODE: plain_(lambda: encode(plain)),
        f"{ENCODE}, LoRA unmerged": lora(False, lambda: encode(tuned)),
        f"{ENCODE}, LoRA merged": lora(True, lambda: encode(tuned)),
    }


def encoder_of(name: str) -> str:
    """The encode-only variant whose time a variant's decode time is measured against."""
    return next((f"{ENCODE}, {s}" for s in ("LoRA unmerged", "LoRA merged") if name.endswith(s)), ENCODE)


def make_inputs(args: argparse.Namespace) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    q = torch.randint(1000, 30000, (args.batch, 24), generator=g)
    q[:, 0] = 30523  # [ENC]
    pixels = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    return dict(question_ids=q, question_mask=torch.ones_like(q), pixels=pixels)


def measure(args: argparse.Namespace) -> dict[str, dict]:
    calls = variants(args, make_inputs(args))
    answers = {name: (setup(), fn())[1] for name, (setup, fn) in calls.items()}  # warm-up; answers to compare

    def run(setup: Callable[[], None], fn: Callable[[], Tensor]) -> float:
        setup()  # merging / unmerging LoRA is not timed
        return timed(fn)

    results = interleave({name: (lambda v=v: run(*v)) for name, v in calls.items()}, args.rounds)
    return {name: {"times": results[name], "answers": answers[name]} for name in calls}


def table(results: dict[str, dict], batch: int, beams: int) -> str:
    head = ["variant", "batch ms (IQR)", "questions/s", "time / beam+cache", "decode ms (time - its encode)"]
    head += ["decode / beam+cache decode", "mean answer tokens", "answers = reference"]
    median = {name: Summary.of(r["times"]).median for name, r in results.items()}
    ref = f"beam {beams}, KV cache"
    ref_decode = median[ref] - median[ENCODE]
    rows = []
    for name, r in results.items():
        t = Summary.of(r["times"])
        cells: list[object] = [name, f"{t.median * 1e3:.0f} ± {t.iqr * 1e3:.0f}", f"{batch / t.median:.1f}"]
        cells.append(f"{t.median / median[ref]:.2f}x")
        if name.startswith(ENCODE):
            rows.append([*cells, "", "", "", ""])
            continue
        decode = t.median - median[encoder_of(name)]
        cells += [f"{decode * 1e3:.0f}", f"{decode / ref_decode:.2f}x", f"{answer_tokens(r['answers']):.1f}"]
        rows.append([*cells, same_answers(r["answers"], name, results, beams)])
    return markdown_table(head, rows)


def answer_tokens(ids: Tensor) -> float:
    return float((ids != 0).sum(dim=1).float().mean())


def same_answers(ids: Tensor, name: str, results: dict[str, dict], beams: int) -> str:
    """How many answers equal those of the cached search of the same kind (greedy or beam, same model)."""
    if "LoRA unmerged" in name:
        return "(other weights; reference of merged)"
    if "LoRA merged" in name:
        ref = results[f"beam {beams}, KV cache, LoRA unmerged"]["answers"]
    elif name.startswith("greedy"):
        ref = results["greedy, KV cache"]["answers"]
    else:
        ref = results[f"beam {beams}, KV cache"]["answers"]
    return f"{int((ids == ref).all(dim=1).sum())}/{ids.shape[0]}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=None, help="image size (224; quick 32)")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--tokens", type=int, default=10, help="max new tokens")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny architecture: a smoke test in seconds")
    args = p.parse_args(argv)
    args.size = args.size or (32 if args.quick else 224)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    what = f"{'tiny' if args.quick else 'mile-small'} random init, {args.size} px, batch {args.batch}, "
    what += f"{args.beams} beams, {args.tokens} new tokens, fp32, {args.rounds} rounds"
    print(header("benchmarks.generation", argv, args.threads, what), flush=True)
    results = measure(args)
    print(f"load average at the end: {load_average()}\n")
    print(table(results, args.batch, args.beams))
    return results


if __name__ == "__main__":
    main()
