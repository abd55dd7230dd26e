"""Using a finished run: evaluate it on any split, or answer one question about one image."""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import set_seed

from mile.atomic import atomic_write_json
from mile.config import merge_config, validate_config
from mile.data.errors import DataError
from mile.engine.accelerator import make_accelerator, run_device
from mile.engine.build import Session, build_session
from mile.engine.candidates import answer_candidates
from mile.engine.checkpoint import load_weights
from mile.engine.datasets import load_split
from mile.engine.evaluate import evaluate_splits
from mile.engine.memory import tune_memory
from mile.engine.precision import Precision, inference_precision
from mile.engine.probe import probe_inputs
from mile.engine.rundir import RunDir
from mile.model.generation import beam_hypotheses, generate
from mile.model.ranking import rank_answers
from mile.tokenizer import MileTokenizer


def load_trained(run: RunDir, overrides: dict[str, Any] | None = None) -> Session:
    """The run's model with its plan applied and its trained weights loaded (errors name any mismatch)."""
    cfg = run.config()
    if overrides:  # a top layer over the stored config, by the rule of `extends` and `key=value` overrides
        cfg = validate_config(merge_config(cfg.model_dump(mode="json"), overrides), str(run / "config.yaml"))
    if not run.weights.is_dir():
        raise FileNotFoundError(
            f"{run.path} has no trained weights ({run.weights}); did its training finish?"
        )
    # Frozen weights are not saved: a randomly initialised base (model.init random) is rebuilt from the seed
    # training built it from, as train_run does.
    set_seed(cfg.train.seed)
    session = build_session(cfg)
    load_weights(session.tuning, run.weights)
    session.model.eval()
    return session


def evaluate_run(
    run: RunDir, splits: list[str], data_overrides: dict[str, Any] | None = None, inference: str | None = None
) -> dict:
    """Metrics of the run on `splits`; `data_overrides` (nested `data` keys) merge over the run's data section.
    `inference` other than the run's eval.inference (generate / rank) writes to eval/<inference>/<split>/."""
    overrides: dict[str, Any] = {"data": {**(data_overrides or {}), "eval_splits": splits}}
    tag = run.inference_tag(inference)
    if inference is not None:
        overrides["eval"] = {"inference": inference}
    tune_memory()
    session = load_trained(run, overrides)
    cfg = session.config
    accelerator = make_accelerator(cfg, inference_precision(cfg.train.mixed_precision, run_device(cfg)))
    data = {split: load_split(cfg, split) for split in splits}
    return evaluate_splits(cfg, session, data, run, accelerator, tag=tag, merge=True)


def cpu_precision(session: Session) -> Precision:
    """The precision a loaded run answers and probes in (on the CPU, where `load_trained` leaves it)."""
    return inference_precision(session.config.train.mixed_precision, "cpu")


@torch.no_grad()
def answer(session: Session, image: str, questions: list[str], num_beams: int | None = None) -> list[str]:
    """An answer to each question about `image`; `num_beams` None: the run's eval.num_beams.

    Raises DataError for a blank question or an unreadable image, ConfigError for a beam count out of bounds."""
    generation = session.config.eval.generation(num_beams)  # checked before the image is read
    pixels, ids, mask = _inputs(session, image, questions)
    with cpu_precision(session).autocast():
        out = generate(session.model, ids, mask, pixels=pixels, config=generation)
    return session.tokenizer.decode(out)


@torch.no_grad()
def beam_answers(
    session: Session, image: str, questions: list[str], num_beams: int | None = None
) -> list[list[tuple[str, float]]]:
    """Every answer the beam search kept for each question, best first, with its score (log-likelihood per
    token, nats); the first is what `answer` gives."""
    generation = session.config.eval.generation(num_beams)
    pixels, ids, mask = _inputs(session, image, questions)
    with cpu_precision(session).autocast():
        hypotheses, scores = beam_hypotheses(session.model, ids, mask, pixels, generation)
    b, k, length = hypotheses.shape
    texts = session.tokenizer.decode(hypotheses.view(b * k, length))
    return [
        [(texts[i * k + j], float(scores[i, j])) for j in range(k) if scores[i, j] > float("-inf")]
        for i in range(b)
    ]


@torch.no_grad()
def ranked_answers(
    session: Session, image: str, questions: list[str], top: int = 5
) -> list[list[tuple[str, float]]]:
    """The `top` candidate answers (eval.answer_list, or the training split's) for each question about `image`,
    with their log-likelihoods (nats), best first."""
    pixels, ids, mask = _inputs(session, image, questions)
    candidates = answer_candidates(session.config)
    answer_ids, answer_mask = session.tokenizer.encode_answers(candidates)
    k = max(top, session.config.eval.rank_top_k)
    with cpu_precision(session).autocast():
        ranked = rank_answers(session.model, ids, mask, answer_ids, answer_mask, pixels=pixels, top_k=k)
    return [
        [(candidates[i], score) for i, score in zip(row[:top].tolist(), scores[:top].tolist(), strict=True)]
        for row, scores in zip(ranked.top, ranked.scores, strict=True)
    ]


def _inputs(session: Session, image: str, questions: list[str]) -> tuple[torch.Tensor, ...]:
    """The image once per question, and the questions as ids and mask (checked first: none may be blank)."""
    check_questions(session.tokenizer, questions)
    pixels = session.transform(train=False)(image)[None].expand(len(questions), -1, -1, -1)
    return (pixels, *session.tokenizer.encode_questions(questions))


def check_questions(tokenizer: MileTokenizer, questions: list[str]) -> None:
    """Refuse an empty list and blank questions: the model would answer a question it was never asked."""
    if isinstance(questions, str):  # iterating it would ask one question per character
        raise DataError(f"questions must be a list of strings, got the string {questions[:40]!r}")
    if not questions:
        raise DataError("no questions to answer")
    bad = [q for q in questions if not isinstance(q, str)]
    if bad:
        raise DataError(f"questions must be text, got {type(bad[0]).__name__} {bad[0]!r}")
    # blank = nothing the tokenizer keeps ([ENC] and [SEP] only): also catches zero-width spaces and control
    # characters, which str.strip() leaves in place
    for position, count in enumerate(tokenizer.count_tokens(questions), 1):
        if count <= 2:
            raise DataError(
                f"question {position} of {len(questions)} is blank ({questions[position - 1][:40]!r}): "
                "ask something about the image"
            )


def probe_run(run: RunDir, split: str | None = None, limit: int = 0, seed: int = 0) -> dict[str, Any]:
    """Probe a finished run on a split (default: its first evaluation split; `limit` > 0: the first `limit`
    questions) and store the result in eval/<split>/probe.json."""
    session = load_trained(run)
    split = split or session.config.data.eval_splits[0]
    samples = load_split(session.config, split).samples
    samples = samples[:limit] if limit > 0 else samples
    precision = cpu_precision(session)
    with precision.autocast():
        result = probe_inputs(session, samples, session.config.eval.batch_size, seed)
    result = {"split": split, **result, "precision": precision.used}
    atomic_write_json(run.eval_dir(split) / "probe.json", result)
    return result
