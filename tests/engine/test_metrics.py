"""Answer normalisation and the scoring rules, pinned on hand-made cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mile.data.answers import answer_tokens, normalize_answer
from mile.data.sample import Sample
from mile.engine.metrics import by_question_type, is_correct, score, token_scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),
        ("  Yes.  ", "yes"),
        ("left lung ' s", "left lung s"),
        ("left lung's", "left lung s"),
        ("x - ray", "x ray"),
        ("X-Ray", "x ray"),
        ("t ##2", "t2"),
        ("t ##2 - weighted", "t2 weighted"),
        ("T2", "t2"),
        ("a\tb  \n c", "a b c"),
        ("liver, spleen", "liver spleen"),
        ("liver , spleen", "liver spleen"),
        ("2.5 cm", "2 5 cm"),
        ("2 . 5 cm", "2 5 cm"),
        ("(a) MRI", "a mri"),
        ("Ménière", "meniere"),
        ("ＭＲＩ", "mri"),  # full-width forms
        ("肝 脏", "肝脏"),
        ("肝脏，脾脏", "肝脏脾脏"),
        ("X 光", "x光"),
        ("", ""),
        ("  ...  ", ""),
        (4, "4"),
    ],
)
def test_normalize_answer(text: object, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "truth", "correct"),
    [
        ("yes", "Yes", True),
        ("left lung ' s", "Left lung's", True),
        ("x - ray", "X-ray", True),
        ("t ##2", "T2", True),
        ("no", "yes", False),
        ("lung", "lungs", False),
        ("left", "left lung", False),
        ("", "", True),
    ],
)
def test_is_correct(prediction: str, truth: str, correct: bool) -> None:
    assert is_correct(prediction, truth) is correct


@pytest.mark.parametrize(
    ("prediction", "truth", "recall", "f1"),
    [
        ("left lung", "left lung", 1.0, 1.0),
        ("left lung", "left lung, right lung", 0.5, 2 / 3),
        ("lung lung lung", "lung", 1.0, 0.5),  # multiset overlap: one lung counts once
        ("mri", "ct", 0.0, 0.0),
        ("", "ct", 0.0, 0.0),
        ("ct", "", 0.0, 0.0),
        ("", "", 1.0, 1.0),
        ("肝脏", "肝", 1.0, 2 / 3),  # each CJK character is a token
    ],
)
def test_token_scores(prediction: str, truth: str, recall: float, f1: float) -> None:
    got_recall, got_f1 = token_scores(prediction, truth)
    assert math.isclose(got_recall, recall) and math.isclose(got_f1, f1)


def test_answer_tokens() -> None:
    assert answer_tokens("Left lung's, X-ray") == ["left", "lung", "s", "x", "ray"]
    assert answer_tokens("x 光片") == ["x", "光", "片"]


ITEMS = [
    ("yes", "Yes", "CLOSED"),  # 1 correct; closed by both rules
    ("no", "yes", "CLOSED"),  # 2 wrong;   closed by both rules
    ("left", "Left", "CLOSED"),  # 3 correct; closed by label, open by yesno
    ("liver", "spleen", "CLOSED "),  # 4 wrong;   closed by label (trailing space), open by yesno
    ("x - ray", "X-ray", "OPEN"),  # 5 correct; open by both; recall 1, F1 1
    ("left lung", "left lung , right lung", "OPEN"),  # 6 wrong; open by both; recall 1/2, F1 2/3
    ("t ##2 weighted", "T2 weighted", "OPEN"),  # 7 correct; open by both; recall 1, F1 1
    ("yes", "yes", "OPEN"),  # 8 correct; open by label, closed by yesno; recall 1, F1 1
    ("mri", "CT", "open"),  # 9 wrong;   open by both; recall 0, F1 0
]


def test_score_every_rule_on_a_hand_made_list() -> None:
    result = score(ITEMS)
    assert result["n"] == 9
    assert result["global"] == {"acc": pytest.approx(5 / 9), "n": 9}
    assert result["rules"]["answer_type"] == {"closed": {"acc": 0.5, "n": 4}, "open": {"acc": 0.6, "n": 5}}
    assert result["rules"]["yesno"] == {
        "closed": {"acc": pytest.approx(2 / 3), "n": 3},
        "open": {"acc": 0.5, "n": 6},
    }
    assert result["open_soft"] == {"recall": pytest.approx(3.5 / 5), "f1": pytest.approx((3 + 2 / 3) / 5)}
    assert set(result) == {"n", "global", "rules", "open_soft"}
    json.dumps(result)  # JSON-ready


def test_empty_groups_give_none_not_division_errors() -> None:
    empty = score([])
    assert empty == {
        "n": 0,
        "global": {"acc": None, "n": 0},
        "rules": {
            "answer_type": {"open": {"acc": None, "n": 0}, "closed": {"acc": None, "n": 0}},
            "yesno": {"open": {"acc": None, "n": 0}, "closed": {"acc": None, "n": 0}},
        },
        "open_soft": {"recall": None, "f1": None},
    }
    closed_only = score([("yes", "yes", "CLOSED")])
    assert closed_only["rules"]["answer_type"]["open"] == {"acc": None, "n": 0}
    assert closed_only["rules"]["yesno"]["closed"] == {"acc": 1.0, "n": 1}
    assert closed_only["open_soft"] == {"recall": None, "f1": None}


def test_score_accepts_any_iterable_of_triples() -> None:
    assert score(iter([["a", "a", "OPEN"]]))["global"] == {"acc": 1.0, "n": 1}


@pytest.mark.parametrize(
    ("item", "match"),
    [
        (("a", "a", "MAYBE"), "item 0: answer_type is 'MAYBE'"),
        (("a", "a", None), "item 0: answer_type is None"),  # not a string: the same clear error
    ],
)
def test_bad_answer_type_is_an_error(item: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        score([item])


def test_wrong_item_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="item 1: expected"):
        score([("a", "a", "OPEN"), ("a", "a")])


@given(st.text(max_size=30))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@given(st.text(max_size=20), st.text(max_size=20))
def test_is_correct_is_symmetric_and_scores_bounded(a: str, b: str) -> None:
    assert is_correct(a, b) == is_correct(b, a)
    recall, f1 = token_scores(a, b)
    assert 0.0 <= recall <= 1.0 and 0.0 <= f1 <= 1.0


def test_wordpiece_round_trip_of_every_real_answer(shared_dir: Path) -> None:
    """A model that emits exactly the right tokens must score correct, whichever way its output was decoded."""
    from tokenizers import BertWordPieceTokenizer

    vocab = shared_dir / "weights/minilm-l6-h384-uncased/vocab.txt"
    tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=True)
    files = ["vqa_rad/trainset.json", "vqa_rad/testset.json", "slake/train.json", "slake/validate.json"]
    answers = {str(r["answer"]) for f in files for r in json.loads((shared_dir / "data" / f).read_text())}
    checked = 0
    for answer in sorted(answers):
        encoding = tokenizer.encode(answer)
        if "[UNK]" in encoding.tokens:  # characters outside the vocabulary cannot round-trip
            continue
        raw = " ".join(encoding.tokens[1:-1])  # e.g. "left lung ' s", "t ##2"
        decoded = tokenizer.decode(encoding.ids)
        assert is_correct(raw, answer), (answer, raw)
        assert is_correct(decoded, answer), (answer, decoded)
        checked += 1
    assert checked > 700


def test_by_question_type_counts_each_type_most_wrong_first() -> None:
    items = [("Position", False), ("Position", False), ("Position", True), ("KG", False), ("Organ", True)]
    items += [(None, False)]
    table = by_question_type(items)
    assert list(table) == ["Position", "(none)", "KG", "Organ"]  # by wrong answers, then by name
    assert table["Position"] == {"acc": 1 / 3, "n": 3, "wrong": 2}
    assert table["Organ"] == {"acc": 1.0, "n": 1, "wrong": 0}
    assert by_question_type([(None, True), ("", False)]) == {}  # a dataset without question types


def test_format_metrics_names_the_types_with_most_errors() -> None:
    from mile.engine.evaluate import format_metrics, score_split

    samples = [
        Sample(id=str(i), image=Path("x.png"), question="q", answer=a, answer_type="OPEN", question_type=t)
        for i, (a, t) in enumerate([("left", "Position"), ("right", "Position"), ("liver", "Organ")])
    ]
    metrics, _ = score_split(samples, {0: "right", 1: "left", 2: "liver"}, "validate")
    assert metrics["question_type"]["Position"] == {"acc": 0.0, "n": 2, "wrong": 2}
    assert "wrong by question type: Position 2/2" in format_metrics(metrics)
    assert "Organ" not in format_metrics(metrics)  # no errors there
