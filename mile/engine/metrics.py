"""VQA scoring, with the rule stated beside every number (DESIGN.md section 5).

Answers are compared after `mile.data.answers.normalize_answer` (case, accents, WordPiece pieces, punctuation
and spacing folded). `score` reports exact match after normalisation for all questions (`global`) and for
closed / open questions under two rules, both always reported because papers differ:
- `answer_type`: closed means the dataset's CLOSED label;
- `yesno`: closed means the normalised ground truth is "yes" or "no" (the rule behind MILE's Tables 1-4).
`open_soft` gives mean token recall and token F1 over the open questions of the `answer_type` rule, the secondary
open scores (the paper's open numbers are not plain exact match). Empty groups give `acc: None` with `n: 0`.
`by_question_type` splits the same exact match by the dataset's question type (SLAKE's content type: Position,
Abnormality, KG, ...; VQA-RAD's PRES, POS, ...): where the errors are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from mile.data.answers import YES_NO, answer_tokens, normalize_answer


def is_correct(prediction: Any, truth: Any) -> bool:
    return normalize_answer(prediction) == normalize_answer(truth)


def token_scores(prediction: Any, truth: Any) -> tuple[float, float]:
    """(recall, F1) of the normalised prediction's tokens against the truth's (multiset overlap).

    Tokens are the space-separated words, and each CJK character on its own (Chinese has no spaces).
    Two empty answers score (1, 1); an empty side against a non-empty one scores (0, 0).
    """
    pred_tokens, truth_tokens = answer_tokens(prediction), answer_tokens(truth)
    if not pred_tokens or not truth_tokens:
        same = pred_tokens == truth_tokens
        return float(same), float(same)
    common = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if common == 0:
        return 0.0, 0.0
    recall = common / len(truth_tokens)
    precision = common / len(pred_tokens)
    return recall, 2 * precision * recall / (precision + recall)


def _group(correct: Sequence[bool]) -> dict[str, Any]:
    n = len(correct)
    return {"acc": (sum(correct) / n) if n else None, "n": n}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _normalise_type(answer_type: Any, index: int) -> str:
    normalised = answer_type.strip().upper() if isinstance(answer_type, str) else None
    if normalised not in ("OPEN", "CLOSED"):
        raise ValueError(f"item {index}: answer_type is {answer_type!r}, expected 'OPEN' or 'CLOSED'")
    return normalised


def score(items: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """Score (prediction, ground_truth, answer_type) items; fractions in [0, 1], None for empty groups.

    Returns `{"n", "global": {"acc", "n"}, "rules": {"answer_type" | "yesno": {"open" | "closed": {"acc", "n"}}},
    "open_soft": {"recall", "f1"}}`.
    """
    groups: dict[str, list[bool]] = {
        key: [] for key in ("all", "type_open", "type_closed", "yesno_open", "yesno_closed")
    }
    soft: list[tuple[float, float]] = []  # (token recall, token F1) of each open question
    for index, item in enumerate(items):
        if len(item) != 3:
            raise ValueError(f"item {index}: expected (prediction, ground_truth, answer_type), got {item!r}")
        prediction, truth, answer_type = item
        closed_by_type = _normalise_type(answer_type, index) == "CLOSED"
        closed_by_yesno = normalize_answer(truth) in YES_NO
        correct = is_correct(prediction, truth)
        groups["all"].append(correct)
        groups["type_closed" if closed_by_type else "type_open"].append(correct)
        groups["yesno_closed" if closed_by_yesno else "yesno_open"].append(correct)
        if not closed_by_type:
            soft.append(token_scores(prediction, truth))
    return {
        "n": len(groups["all"]),
        "global": _group(groups["all"]),
        "rules": {
            "answer_type": {"open": _group(groups["type_open"]), "closed": _group(groups["type_closed"])},
            "yesno": {"open": _group(groups["yesno_open"]), "closed": _group(groups["yesno_closed"])},
        },
        "open_soft": {"recall": _mean([r for r, _ in soft]), "f1": _mean([f1 for _, f1 in soft])},
    }


def by_question_type(items: Iterable[tuple[Any, bool]]) -> dict[str, dict[str, Any]]:
    """(question_type, correct) items -> {type: {"acc", "n", "wrong"}}, most wrong answers first; questions
    without a type count under "(none)". Empty when no question has a type."""
    groups: dict[str, list[bool]] = {}
    for question_type, correct in items:
        label = str(question_type).strip() if question_type is not None else ""
        groups.setdefault(label or "(none)", []).append(bool(correct))
    if set(groups) <= {"(none)"}:
        return {}
    table = {label: {**_group(c), "wrong": len(c) - sum(c)} for label, c in groups.items()}
    return dict(sorted(table.items(), key=lambda kv: (-kv[1]["wrong"], kv[0])))
