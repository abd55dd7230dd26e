"""The truncation report: exact counts with a word-counting tokenizer, and the real WordPiece tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mile.instruct.build import build_instruction_data
from mile.instruct.truncation import percentile, truncation_report
from mile.pretrained import bundled_vocab
from mile.tokenizer import MileTokenizer


class WordCounter:
    """Words plus the two special tokens, so lengths are obvious in the test."""

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]


def _record(pool: list[str], ids: list[int | None], question: str = "q") -> dict:
    return {"question_pool": pool, "template_ids": ids, "question": question}


def test_counts_and_excess_per_template() -> None:
    records = [
        _record(["a b c", "a b c d e f g h"], [1, 2]),  # 5 and 10 tokens
        _record(["a", "a b c d e f g h i j k l"], [1, 2]),  # 3 and 14 tokens
        _record(["a b c d e f"], [None]),  # 8 tokens, no known template
    ]
    report = truncation_report(records, WordCounter(), max_len=6)
    assert report["max_len"] == 6
    assert report["all"]["n"] == 5 and report["all"]["n_truncated"] == 3
    assert report["all"]["fraction"] == pytest.approx(0.6)
    assert report["all"]["excess"] == {"max": 8, "mean": pytest.approx(14 / 3), "p50": 4, "p90": 8, "p99": 8}
    assert list(report["per_template"]) == ["1", "2", "unmatched"]
    assert (
        report["per_template"]["1"]["n_truncated"] == 0
        and report["per_template"]["1"]["excess"]["max"] is None
    )
    assert report["per_template"]["2"]["tokens"] == {"max": 14, "mean": 12.0}
    assert report["question"]["n"] == 3 and report["question"]["n_truncated"] == 0
    json.dumps(report)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 99) == 4 and percentile([5], 1) == 5


def test_real_tokenizer_on_built_records(tmp_path: Path, rad_root: Path) -> None:
    out = tmp_path / "out.json"
    build_instruction_data([f"vqa_rad={rad_root}"], "train", out)
    records = json.loads(out.read_text())
    tokenizer = MileTokenizer(bundled_vocab())
    report = truncation_report(records, tokenizer, max_len=35)
    assert report["all"]["n"] == sum(len(r["question_pool"]) for r in records)
    template5 = report["per_template"]["5"]  # the longest template: cut even for short questions
    assert template5["n_truncated"] == template5["n"] == 4
    assert report["per_template"]["6"]["n_truncated"] == 0
    ids, _ = tokenizer.encode_questions(records[0]["question_pool"][4:5])
    assert ids.shape[1] == 35  # what the encoder really sees


def test_max_len_must_hold_special_tokens() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        truncation_report([], WordCounter(), max_len=1)
