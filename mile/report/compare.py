"""Paired comparison of two runs on the same questions: accuracy of each, the questions where exactly one is
right, and the exact McNemar test on those (a two-sided binomial test with p = 1/2).

Two runs evaluated on the same split answer the same questions, so their difference is judged question by
question, not by comparing two accuracies as if they came from independent samples. Seeds of one config compared
this way show how far apart noise alone puts two runs, which is the yardstick for every other difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

from mile.config import INFERENCES
from mile.data.answers import YES_NO, normalize_answer
from mile.errors import MileError

GROUPS = ("global", "closed", "open")
REQUIRED = ("id", "answer", "prediction", "answer_type", "correct")


def _text(value: Any) -> str:
    return " ".join(str(value).split())


# What makes two predictions.jsonl records the same question (engine/evaluate.py writes all but `image`), each with
# the normal form it is compared in: answers as scoring compares them, answer types as scoring reads them.
QUESTION_FIELDS = {
    "question": _text,
    "image": _text,
    "answer": normalize_answer,
    "answer_type": lambda value: str(value).strip().upper(),
    "question_type": _text,
}


class CompareError(MileError, ValueError):
    """The two runs cannot be compared (missing predictions, different questions)."""


class MissingPredictions(CompareError):
    """A run holds no predictions on `split` (eval/<split>, or eval/<mode>/<split>): it is not evaluated there
    (the caller says how to)."""

    def __init__(self, file: Path, run_dir: Path, split: str):
        super().__init__(f"{file}: not found")
        self.run_dir, self.split = run_dir, split


@dataclass(frozen=True)
class Paired:
    """One group of questions scored by both runs."""

    group: str
    n: int
    right_a: int
    right_b: int
    only_a: int  # A right, B wrong
    only_b: int  # A wrong, B right
    answers_differ: int

    @property
    def acc_a(self) -> float | None:
        return self.right_a / self.n if self.n else None

    @property
    def acc_b(self) -> float | None:
        return self.right_b / self.n if self.n else None

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for the discordant counts (1.0 when there are none)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def read_predictions(run_dir: Path, split: str) -> dict[str, dict[str, Any]]:
    """A run's eval/<split>/predictions.jsonl keyed by question id."""
    file = Path(run_dir) / "eval" / split / "predictions.jsonl"
    if not file.is_file():
        raise MissingPredictions(file, run_dir, split)
    rows: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CompareError(f"{file}, line {number}: not JSON ({exc.msg})") from None
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            raise CompareError(f"{file}, line {number}: a prediction record lacks {missing}")
        key = str(row["id"])
        if key in rows:
            raise CompareError(f"{file}, line {number}: question id {key!r} appears twice")
        rows[key] = row
    if not rows:
        raise CompareError(f"{file}: holds no predictions")
    return rows


def is_closed(row: dict[str, Any], rule: str) -> bool:
    if rule == "yesno":
        return normalize_answer(row["answer"]) in YES_NO
    if rule == "answer_type":
        return str(row["answer_type"]).strip().upper() == "CLOSED"
    raise CompareError(f"unknown closed rule {rule!r}; valid: yesno, answer_type")


def inference_split(run_dir: Path, split: str, inference: str | None) -> str:
    """Where under eval/ a run keeps its `inference` (generate / rank) answers on `split`: eval/<split> when
    that is the run's own eval.inference, eval/<inference>/<split> when `mile eval --inference` added it."""
    if inference is None:
        return split
    if inference not in INFERENCES:
        raise CompareError(f"inference {inference!r}: expected generate or rank")
    from mile.engine.rundir import RunDir

    tag = RunDir(run_dir).inference_tag(inference)
    return f"{tag}/{split}" if tag else split


def compare_runs(
    run_a: Path, run_b: Path, split: str, rule: str = "yesno", inference: str | None = None
) -> list[Paired]:
    """Global / closed / open comparison of two runs' predictions on `split`; both must hold the same questions.
    `inference` (generate / rank) picks each run's answers of that mode, wherever the run keeps them."""
    a = read_predictions(run_a, inference_split(run_a, split, inference))
    b = read_predictions(run_b, inference_split(run_b, split, inference))
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        parts = [f"{len(only_a)} only in the first (e.g. {only_a[:3]})"] if only_a else []
        parts += [f"{len(only_b)} only in the second (e.g. {only_b[:3]})"] if only_b else []
        raise CompareError(
            f"{run_a} and {run_b} answered different questions on {split!r}: {', '.join(parts)}"
        )
    check_same_questions(a, b, f"{run_a} and {run_b} on {split!r}")
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    for key, row in a.items():
        members["global"].append(key)
        members["closed" if is_closed(row, rule) else "open"].append(key)
    return [_paired(group, keys, a, b) for group, keys in members.items()]


def check_same_questions(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], where: str) -> None:
    """Refuse ids that stand for different questions in `a` and `b` (another dataset version, a re-split, ids
    reused): pairing them would test the runs on questions neither answered. Fields only one record holds are
    not compared (records written before a field existed)."""
    differing = {key: fields for key, row in a.items() if (fields := _differing_fields(row, b[key]))}
    if not differing:
        return
    key, fields = next(iter(differing.items()))
    values = "; ".join(f"{f} {_clip(a[key][f])} vs {_clip(b[key][f])}" for f in fields)
    more = (
        f" ({len(differing) - 1} more ids differ, e.g. {list(differing)[1:4]})" if len(differing) > 1 else ""
    )
    raise CompareError(f"question id {key!r} is a different question in {where}: {values}{more}")


def _differing_fields(x: dict[str, Any], y: dict[str, Any]) -> list[str]:
    return [f for f, norm in QUESTION_FIELDS.items() if f in x and f in y and norm(x[f]) != norm(y[f])]


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _paired(group: str, keys: list[str], a: dict, b: dict) -> Paired:
    right = [(bool(a[k]["correct"]), bool(b[k]["correct"])) for k in keys]
    only_a, only_b = sum(x and not y for x, y in right), sum(y and not x for x, y in right)
    differ = sum(normalize_answer(a[k]["prediction"]) != normalize_answer(b[k]["prediction"]) for k in keys)
    right_a, right_b = sum(x for x, _ in right), sum(y for _, y in right)
    return Paired(group, len(keys), right_a, right_b, only_a, only_b, differ)


def format_comparison(rows: list[Paired], name_a: str, name_b: str, rule: str) -> str:
    """A small table: accuracy of each run, difference, discordant questions and the McNemar p-value."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    lines = [
        f"A = {name_a}",
        f"B = {name_b}",
        f"closed rule: {rule}; p = exact McNemar test on the questions exactly one run got right",
        "",
        f"{'group':<8} {'n':>6} {'A %':>7} {'B %':>7} {'B-A':>7} {'A only':>7} {'B only':>7} {'p':>8}"
        f" {'answers differ':>15}",
    ]
    for r in rows:
        diff = "n/a" if r.n == 0 else f"{100 * (r.right_b - r.right_a) / r.n:+.2f}"
        lines.append(
            f"{r.group:<8} {r.n:>6} {pct(r.acc_a):>7} {pct(r.acc_b):>7} {diff:>7} {r.only_a:>7} {r.only_b:>7}"
            f" {r.p_value:>8.4f} {r.answers_differ:>15}"
        )
    return "\n".join(lines)


def comparison_json(rows: list[Paired]) -> dict[str, Any]:
    return {
        r.group: {
            "n": r.n,
            "acc_a": r.acc_a,
            "acc_b": r.acc_b,
            "only_a": r.only_a,
            "only_b": r.only_b,
            "p_mcnemar": r.p_value,
            "answers_differ": r.answers_differ,
        }
        for r in rows
    }
