"""How many instruction prompts the question length limit cuts, and by how much.

BLIP-style models truncate questions to 35 tokens ([ENC] ... [SEP] included). The authors' templates add up to
~25 tokens of fixed text ("<image>" alone is three WordPiece tokens) plus the options, so many prompts lose their
end, which for templates 1, 2, 4 and 5 is the instruction itself ("Short answer:"). This report makes that visible
before training: per template and overall, the share of prompts over the limit and the excess token counts.

Token counts come from `tokenizer.count_tokens`, which counts the two special tokens like the encoder does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from mile.data.sample import Sample

QUESTIONS = "question"  # the group of plain questions, for comparison
UNMATCHED = "unmatched"  # prompts from no known template


class TokenCounter(Protocol):
    def count_tokens(self, texts: list[str]) -> list[int]: ...


def percentile(sorted_values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile (an observed value, so it reads as a token count); None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def length_stats(lengths: Sequence[int], max_len: int) -> dict[str, Any]:
    """Counts and excess-token statistics of one group of texts; excess stats are over the truncated ones."""
    excess = sorted(n - max_len for n in lengths if n > max_len)
    n = len(lengths)
    return {
        "n": n,
        "n_truncated": len(excess),
        "fraction": len(excess) / n if n else 0.0,
        "tokens": {"max": max(lengths, default=None), "mean": sum(lengths) / n if n else None},
        "excess": {
            "max": excess[-1] if excess else None,
            "mean": sum(excess) / len(excess) if excess else None,
            "p50": percentile(excess, 50),
            "p90": percentile(excess, 90),
            "p99": percentile(excess, 99),
        },
    }


def _prompts(item: Sample | dict[str, Any]) -> tuple[str, list[str], list[Any]]:
    """(plain question, prompts, template ids) of an instruction Sample or a record written by the builder."""
    if isinstance(item, Sample):
        pool = item.extra.get("question_pool") or []
        return item.question, pool, item.extra.get("template_ids") or [None] * len(pool)
    pool = item["question_pool"]
    return item.get("question", ""), pool, item.get("template_ids") or [None] * len(pool)


def truncation_report(
    items: Iterable[Sample | dict[str, Any]], tokenizer: TokenCounter, max_len: int = 35
) -> dict[str, Any]:
    """A JSON-ready report over every prompt of `items` (instruction Samples or builder records).

    Returns `{"max_len", "all": stats, "per_template": {id: stats}, "question": stats}` where stats is
    `length_stats`; "question" covers the plain questions (when known) as a baseline, and prompts matching no
    template are grouped as "unmatched".
    """
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2 (the two special tokens), got {max_len}")
    groups: dict[str, list[str]] = {}
    questions: list[str] = []
    for item in items:
        question, pool, ids = _prompts(item)
        if question:
            questions.append(question)
        for prompt, template_id in zip(pool, ids, strict=True):
            groups.setdefault(UNMATCHED if template_id is None else str(template_id), []).append(prompt)
    lengths = {name: tokenizer.count_tokens(texts) for name, texts in groups.items()}
    order = sorted(lengths, key=lambda k: (k == UNMATCHED, int(k) if k.isdigit() else 0))
    return {
        "max_len": max_len,
        "all": length_stats([n for k in order for n in lengths[k]], max_len),
        "per_template": {k: length_stats(lengths[k], max_len) for k in order},
        QUESTIONS: length_stats(tokenizer.count_tokens(questions) if questions else [], max_len),
    }
