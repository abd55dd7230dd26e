"""Answer normalisation and VQA scoring, with the rule stated beside every number (DESIGN.md section 5).

Predictions come out of a WordPiece decoder, ground truths out of JSON files, so the same answer can be spelled
"left lung's" / "left lung ' s", "x-ray" / "x - ray", "t2" / "t ##2", "Yes" / "yes ". `normalize_answer` maps all
of these to one form: lower case, accents stripped (the uncased vocabulary drops them), WordPiece continuations
re-joined, every punctuation character folded to a space (BERT splits on each one, so a decoded answer has spaces
around it), whitespace collapsed, and the spaces BERT puts around CJK characters removed ("x 光" -> "x光").

`score` reports exact match after normalisation for all questions (`global`) and for closed / open questions under
two rules, both always reported because papers differ:
- `answer_type`: closed means the dataset's CLOSED label;
- `yesno`: closed means the normalised ground truth is "yes" or "no" (the rule behind MILE's Tables 1-4).
`open_soft` gives mean token recall and token F1 over the open questions of the `answer_type` rule, the secondary
open scores (the paper's open numbers are not plain exact match). Empty groups give `acc: None` with `n: 0`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

_WORDPIECE_CONTINUATION = re.compile(r"\s*##(?=\S)")
_WHITESPACE = re.compile(r"\s+")
_CJK = (
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f"
)
_SPACE_NEXT_TO_CJK = re.compile(rf" (?=[{_CJK}])|(?<=[{_CJK}]) ")
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
YES_NO = ("yes", "no")


def _is_punctuation(char: str) -> bool:
    """BERT's definition: ASCII non-alphanumeric printable characters plus every Unicode punctuation category."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def normalize_answer(text: Any) -> str:
    """The canonical form answers are compared in (see the module docstring). Non-strings are str()-ed."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = _WORDPIECE_CONTINUATION.sub("", text)
    text = "".join(" " if _is_punctuation(c) else c for c in text)
    text = _WHITESPACE.sub(" ", text).strip()
    return _SPACE_NEXT_TO_CJK.sub("", text)


def answer_tokens(text: Any) -> list[str]:
    """The tokens of the normalised answer used by the soft open scores."""
    return _TOKEN.findall(normalize_answer(text))


def is_correct(prediction: Any, truth: Any) -> bool:
    """Exact match after `normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(truth)


def token_scores(prediction: Any, truth: Any) -> tuple[float, float]:
    """(recall, F1) of the normalised prediction's tokens against the truth's (multiset overlap).

    Tokens are the space-separated words, and each CJK character on its own (Chinese has no spaces).
    Two empty answers score (1, 1); an empty side against a non-empty one scores (0, 0).
    """
    pred_tokens = answer_tokens(prediction)
    truth_tokens = answer_tokens(truth)
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
    recalls: list[float] = []
    f1s: list[float] = []
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
            recall, f1 = token_scores(prediction, truth)
            recalls.append(recall)
            f1s.append(f1)
    return {
        "n": len(groups["all"]),
        "global": _group(groups["all"]),
        "rules": {
            "answer_type": {"open": _group(groups["type_open"]), "closed": _group(groups["type_closed"])},
            "yesno": {"open": _group(groups["yesno_open"]), "closed": _group(groups["yesno_closed"])},
        },
        "open_soft": {"recall": _mean(recalls), "f1": _mean(f1s)},
    }
