"""The candidate answers of answer ranking (`eval.inference: rank`): the JSON list `eval.answer_list`, or the
training split's answers (its extra sources included), one per normalised form, spelled as most often in the
data, most frequent first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mile.config import Config
from mile.data.answers import normalize_answer
from mile.data.errors import DataError


def answer_candidates(cfg: Config) -> list[str]:
    if cfg.eval.answer_list:
        return read_answer_list(Path(cfg.eval.answer_list))
    from mile.engine.datasets import load_train

    return candidates_from([sample.answer for sample in load_train(cfg).samples])


def candidates_from(answers: list[str]) -> list[str]:
    forms: dict[str, Counter] = {}
    for answer in answers:
        key = normalize_answer(answer)
        if key:  # an answer of punctuation only can never be right
            forms.setdefault(key, Counter())[answer.strip()] += 1
    ranked = sorted(forms.values(), key=lambda spellings: -sum(spellings.values()))  # stable: ties keep order
    return [spellings.most_common(1)[0][0] for spellings in ranked]


def read_answer_list(file: Path) -> list[str]:
    try:
        answers = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"eval.answer_list: {file} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"eval.answer_list: {file} is not a readable JSON file ({exc})") from None
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"eval.answer_list: {file} must hold a JSON list of answer strings")
    candidates = candidates_from(answers)
    if not candidates:
        raise DataError(f"eval.answer_list: {file} holds no usable answer")
    return candidates
