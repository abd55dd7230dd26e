"""Leak guard: does the instruction data contain the questions we evaluate on?

The authors' VQA-RAD instruction file holds 449 of the 451 questions of the standard VQA-RAD test split: training
on it and testing on that split measures memory, not VQA. Before such numbers are produced, compare the two sets.

A question "occurs" in the instruction data when both match:
- the image, as (dataset family, file name), the file name taken with its parent folder for SLAKE, whose images
  are all called `source.jpg` (`xmlab12/source.jpg`); datasets are compared by family, so `vqa_rad_public` and
  `vqa-rad` count as `vqa_rad`;
- the question after `mile.data.answers.normalize_question` (case, punctuation, spacing folded). For instruction
  samples the plain question is the record's own or the one recovered from a prompt by its template (see
  `mile.instruct.dataset`); when neither is known we look for the normalised question, on word boundaries, inside
  each normalised prompt of the pool.

`find_leaks` reports; `check_leaks` raises `LeakError` unless leaks are explicitly allowed; `drop_leaks` removes
the leaked instruction samples (the honest fix: train on the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mile.data.answers import normalize_question
from mile.data.errors import DataError
from mile.data.sample import Sample


class LeakError(DataError):
    """Evaluation questions occur in the training (instruction) data and leaks were not allowed."""


def source_family(source: str) -> str:
    """`vqa_rad`, `vqa_rad_public`, `vqa-rad` -> `vqa_rad`; other names lower-cased with `_` for `-`."""
    name = source.strip().lower().replace("-", "_")
    return "vqa_rad" if name.startswith("vqa_rad") else name


def image_key(sample: Sample) -> tuple[str, str]:
    """(family, file name), with the parent folder for SLAKE (see the module docstring)."""
    family = source_family(sample.source)
    parts = sample.image.parts
    return family, "/".join(parts[-2:]) if family == "slake" else parts[-1]


def _matcher(sample: Sample) -> Callable[[str], bool]:
    """A test "does normalised question q occur in this instruction sample?", normalising the sample once.

    Exact match against the plain question when it is known, else a word-bounded substring of some prompt.
    """
    if sample.extra.get("question_known", True):
        own = normalize_question(sample.question)
        return lambda question: question == own
    prompts = [f" {normalize_question(p)} " for p in sample.extra.get("question_pool") or [sample.question]]
    return lambda question: any(f" {question} " in prompt for prompt in prompts)


@dataclass
class LeakReport:
    """Which evaluation questions occur in the instruction data, as (instruction id, evaluation id) pairs."""

    n_instruction: int
    n_evaluation: int
    pairs: list[tuple[str, str]] = field(default_factory=list)
    n_shared_images: int = 0  # evaluation images also used by instruction data (a weaker, common overlap)

    @property
    def leaked_evaluation_ids(self) -> list[str]:
        return sorted({e for _, e in self.pairs}, key=_natural)

    @property
    def leaked_instruction_ids(self) -> list[str]:
        return sorted({i for i, _ in self.pairs}, key=_natural)

    @property
    def n_leaked(self) -> int:
        """Evaluation questions that occur in the instruction data."""
        return len(self.leaked_evaluation_ids)

    @property
    def fraction(self) -> float:
        return self.n_leaked / self.n_evaluation if self.n_evaluation else 0.0

    def summary(self, max_examples: int = 5) -> str:
        head = (
            f"{self.n_leaked} of {self.n_evaluation} evaluation questions ({self.fraction:.1%}) occur in the "
            f"instruction data ({len(self.leaked_instruction_ids)} of {self.n_instruction} instruction samples; "
            f"same image and question)"
        )
        if not self.pairs:
            return head
        examples = ", ".join(f"{i} ~ {e}" for i, e in self.pairs[:max_examples])
        return f"{head}, e.g. instruction ~ evaluation: {examples}"

    def to_dict(self, max_examples: int = 20) -> dict[str, Any]:
        """A JSON-ready report, e.g. for a run directory."""
        return {
            "n_instruction": self.n_instruction,
            "n_evaluation": self.n_evaluation,
            "n_leaked": self.n_leaked,
            "fraction": self.fraction,
            "n_leaked_instruction": len(self.leaked_instruction_ids),
            "n_shared_images": self.n_shared_images,
            "examples": [{"instruction": i, "evaluation": e} for i, e in self.pairs[:max_examples]],
        }


def _natural(text: str) -> tuple:
    """Sort ids like `vqa_rad:9` before `vqa_rad:10`."""
    head, _, tail = text.rpartition(":")
    return (head, int(tail), "") if tail.isdigit() else (head, -1, tail)


def find_leaks(instruction: Sequence[Sample], evaluation: Sequence[Sample]) -> LeakReport:
    """Every (instruction sample, evaluation sample) pair with the same image and question."""
    by_image: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for sample in evaluation:
        by_image.setdefault(image_key(sample), []).append((normalize_question(sample.question), sample.id))
    report = LeakReport(n_instruction=len(instruction), n_evaluation=len(evaluation))
    shared: set[tuple[str, str]] = set()
    for sample in instruction:
        key = image_key(sample)
        if candidates := by_image.get(key):
            shared.add(key)
            occurs = _matcher(sample)
            report.pairs.extend((sample.id, eval_id) for question, eval_id in candidates if occurs(question))
    report.n_shared_images = len(shared)
    return report


def check_leaks(
    instruction: Sequence[Sample], evaluation: Sequence[Sample], *, allow: bool = False, what: str = ""
) -> LeakReport:
    """Raise `LeakError` when evaluation questions occur in the instruction data, unless `allow`.

    `what` names the two sets in the message (e.g. "instruct.json vs vqa_rad test"). Returns the report either
    way, so callers can record it beside their results.
    """
    report = find_leaks(instruction, evaluation)
    if report.pairs and not allow:
        prefix = f"{what}: " if what else ""
        raise LeakError(
            f"{prefix}train/test leak: {report.summary()}. Evaluating on these questions would measure "
            "memorisation. Drop them from the instruction data (mile.instruct.leaks.drop_leaks), evaluate on "
            "another split, or allow leaks explicitly (data.leaks: allow) and say so beside every number."
        )
    return report


def drop_leaks(instruction: Sequence[Sample], report: LeakReport) -> list[Sample]:
    """The instruction samples that are not part of any leaked pair."""
    leaked = set(report.leaked_instruction_ids)
    return [s for s in instruction if s.id not in leaked]
