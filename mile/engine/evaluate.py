"""Evaluation: answers for every question of a split, generated or ranked (`eval.inference`), scored by every
rule, written to disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mile.atomic import atomic_write_json, atomic_write_text
from mile.config import Config
from mile.data.sample import Sample
from mile.engine.batches import Collate, VQADataset
from mile.engine.build import Session
from mile.engine.candidates import answer_candidates
from mile.engine.datasets import prompt_chooser
from mile.engine.metrics import by_question_type, is_correct, score
from mile.engine.precision import USED_NAMES
from mile.engine.rundir import RunDir
from mile.model.generation import generate
from mile.model.ranking import rank_answers


@torch.no_grad()
def predict(
    cfg: Config,
    session: Session,
    samples: list[Sample],
    accelerator: Accelerator,
    desc: str,
    features=None,
    candidates: list[str] | None = None,
) -> dict[int, str]:
    """index -> answer for every sample, gathered from all processes without duplicates: generated, or with
    `candidates` the candidate the decoder finds most likely (mile.model.ranking)."""
    loader = DataLoader(
        eval_dataset(cfg, session, samples, decode=features is None),
        batch_size=cfg.eval.batch_size,
        collate_fn=Collate(session.tokenizer),
        num_workers=cfg.data.num_workers,
    )
    loader = accelerator.prepare_data_loader(loader)
    generation, core = cfg.eval.generation(), accelerator.unwrap_model(session.model)
    if candidates is not None:
        ranked = session.tokenizer.encode_answers(candidates)
        ranked = tuple(t.to(accelerator.device) for t in ranked)
    was_training = core.training
    core.eval()
    local: list[tuple[int, str]] = []
    bar = tqdm(loader, desc=desc, unit="batch", disable=not accelerator.is_local_main_process, leave=False)
    for batch in bar:
        if features:
            vision = {"image_states": features.states(batch["images"], accelerator.device)}
        else:
            vision = {"pixels": batch["pixels"]}
        question = (batch["question_ids"], batch["question_mask"])
        with accelerator.autocast():
            if candidates is None:
                texts = session.tokenizer.decode(generate(core, *question, config=generation, **vision))
            else:
                best = rank_answers(core, *question, *ranked, top_k=cfg.eval.rank_top_k, **vision).best
                texts = [candidates[i] for i in best.tolist()]
        local += zip(batch["index"].tolist(), texts, strict=True)
    core.train(was_training)
    if accelerator.num_processes > 1:
        local = accelerator.gather_for_metrics(local, use_gather_object=True)
    return dict(local)  # padding duplicates from uneven shards collapse onto their index


def score_split(
    samples: list[Sample], answers: dict[int, str], split: str
) -> tuple[dict[str, Any], list[dict]]:
    missing = [i for i in range(len(samples)) if i not in answers]
    if missing:
        raise RuntimeError(
            f"evaluation of {split} lost {len(missing)} predictions, e.g. sample indices {missing[:5]}"
        )
    rows = [
        {
            "id": sample.id,
            "question": sample.question,
            "answer": sample.answer,
            "prediction": answers[i],
            "answer_type": sample.answer_type,
            "question_type": sample.question_type,
            "correct": is_correct(answers[i], sample.answer),
        }
        for i, sample in enumerate(samples)
    ]
    metrics = score([(r["prediction"], r["answer"], r["answer_type"]) for r in rows])
    metrics["question_type"] = by_question_type((r["question_type"], r["correct"]) for r in rows)
    return {"split": split, **metrics}, rows


def write_eval(directory: Path, metrics: dict[str, Any], rows: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(directory / "predictions.jsonl", lines)
    atomic_write_json(directory / "metrics.json", metrics)


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line per rule, with the counts beside each accuracy."""

    def cell(group: dict) -> str:
        return "n/a (n=0)" if group["acc"] is None else f"{100 * group['acc']:.2f}% (n={group['n']})"

    g, rules = metrics["global"], metrics["rules"]
    lines = [f"{metrics['split']}: global {cell(g)}"]
    for rule in ("answer_type", "yesno"):
        r = rules[rule]
        lines.append(f"  closed by {rule:<11} closed {cell(r['closed'])}  open {cell(r['open'])}")
    soft = metrics.get("open_soft") or {}
    if soft.get("recall") is not None:
        lines.append(
            f"  open (answer_type) token recall {100 * soft['recall']:.2f}%  F1 {100 * soft['f1']:.2f}%"
        )
    types = [(t, g) for t, g in (metrics.get("question_type") or {}).items() if g["wrong"]]
    if types:
        shown = ", ".join(f"{t} {g['wrong']}/{g['n']}" for t, g in types[:5])
        more = f" (+{len(types) - 5} more types)" if len(types) > 5 else ""
        lines.append(f"  wrong by question type: {shown}{more}")
    return "\n".join(lines)


def evaluate_splits(
    cfg: Config,
    session: Session,
    splits: dict,
    run: RunDir,
    accelerator: Accelerator,
    tag: str = "",
    cache=None,
    merge: bool = False,
) -> dict:
    """Generate and score every evaluation split; files go to eval/<split>/ (or eval/<tag>/<split>/).
    With `merge`, LoRA-family adapters are folded into the weights for the evaluation (faster decoding) and
    unfolded after; mid-training evaluations do not merge, so training continues on untouched weights."""
    merged = session.tuning.merge() if merge and cfg.eval.merge_adapters else []
    if cfg.eval.compile:
        compile_encoders(session.model)
    candidates = answer_candidates(cfg) if cfg.eval.inference == "rank" else None
    if candidates is not None:
        run.log(f"rank: {len(candidates)} candidate answers, top {cfg.eval.rank_top_k} by first token scored")
    try:
        results = {
            split: _evaluate_split(
                cfg, session, split, splits[split], run, accelerator, tag, cache, candidates
            )
            for split in cfg.data.eval_splits
        }
        return {split: m for split, m in results.items() if m is not None}  # metrics live on the main process
    finally:
        if merged:
            session.tuning.unmerge()


def compile_encoders(model) -> None:
    """torch.compile the per-question encoders (vision, JTM); their shapes repeat from batch to batch, unlike the
    token-by-token decoder. Compiles the bound forwards, so parameter names (and checkpoints) stay the same."""
    for tower in (model.vision, model.text_encoder):
        if not getattr(tower, "_compiled", False):
            tower.forward = torch.compile(tower.forward, dynamic=True)
            tower._compiled = True


def eval_dataset(cfg: Config, session: Session, samples: list[Sample], decode: bool = True) -> VQADataset:
    """The questions evaluation (and the probe) show the model: evaluation-time images, and the prompt of each
    record that `data.prompts.eval` picks. `decode=False`: image paths only, for the feature cache."""
    transform = session.transform(train=False) if decode else None
    return VQADataset(samples, transform, prompt_chooser(cfg, train=False))


def _evaluate_split(
    cfg: Config, session: Session, split: str, data, run: RunDir, accelerator, tag, cache, candidates
):
    answers = predict(cfg, session, data.samples, accelerator, f"eval {split}", cache, candidates)
    if not accelerator.is_main_process:
        return None
    metrics, rows = score_split(data.samples, answers, split)
    metrics["precision"] = USED_NAMES[accelerator.mixed_precision]
    metrics["inference"] = cfg.eval.inference
    write_eval(run.eval_dir(f"{tag}/{split}" if tag else split), metrics, rows)
    run.log(format_metrics(metrics))
    return metrics
