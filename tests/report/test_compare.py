"""`mile compare`: two runs question by question, with the exact McNemar test."""

import json
from math import comb

import pytest
from typer.testing import CliRunner

from mile.cli.main import app
from mile.report.compare import CompareError, compare_runs, mcnemar_exact


def write_predictions(run, rows, split="test"):
    folder = run / "eval" / split
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, answer, prediction, answer_type in rows:
        lines.append(
            json.dumps(
                {
                    "id": qid,
                    "question": "q",
                    "answer": answer,
                    "prediction": prediction,
                    "answer_type": answer_type,
                    "correct": prediction.lower() == answer.lower(),
                }
            )
        )
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return run


QUESTIONS = [  # id, truth, answer type
    (1, "yes", "CLOSED"),
    (2, "no", "CLOSED"),
    (3, "lung", "OPEN"),
    (4, "liver", "OPEN"),
    (5, "left", "CLOSED"),  # closed by answer_type, open by the yes/no rule
]


def run_with(tmp_path, name, predictions):
    rows = [(q, truth, pred, kind) for (q, truth, kind), pred in zip(QUESTIONS, predictions, strict=True)]
    return write_predictions(tmp_path / name, rows)


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (comb(10, 0) + comb(10, 1)) / 2**10)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0  # capped: the two tails overlap in the middle
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_groups_count_discordant_questions_under_each_rule(tmp_path):
    a = run_with(tmp_path, "a", ["yes", "yes", "lung", "kidney", "left"])  # right: 1, 3, 5
    b = run_with(tmp_path, "b", ["yes", "no", "heart", "liver", "right"])  # right: 1, 2, 4
    by_group = {r.group: r for r in compare_runs(a, b, "test", "yesno")}
    g = by_group["global"]
    assert (g.n, g.right_a, g.right_b, g.only_a, g.only_b, g.answers_differ) == (5, 3, 3, 2, 2, 4)
    closed, open_ = by_group["closed"], by_group["open"]
    assert (closed.n, closed.only_a, closed.only_b) == (2, 0, 1)  # questions 1 and 2
    assert (open_.n, open_.only_a, open_.only_b) == (3, 2, 1)  # 3, 4 and "left"
    typed = {r.group: r for r in compare_runs(a, b, "test", "answer_type")}
    assert (typed["closed"].n, typed["closed"].only_a) == (3, 1)  # "left" is CLOSED by its label


def test_runs_on_different_questions_are_refused(tmp_path):
    a = run_with(tmp_path, "a", ["yes"] * 5)
    b = write_predictions(tmp_path / "b", [(1, "yes", "yes", "CLOSED"), (9, "no", "no", "CLOSED")])
    with pytest.raises(CompareError, match=r"different questions.*4 only in the first.*1 only in the second"):
        compare_runs(a, b, "test")


def test_bad_prediction_files_name_the_file_and_line(tmp_path):
    a = run_with(tmp_path, "a", ["yes"] * 5)
    with pytest.raises(CompareError, match=r"b/eval/test/predictions.jsonl: not found"):
        compare_runs(a, tmp_path / "b", "test")
    bad = tmp_path / "c" / "eval" / "test"
    bad.mkdir(parents=True)
    (bad / "predictions.jsonl").write_text('{"id": 1, "answer": "yes"}\n')
    with pytest.raises(CompareError, match=r"line 1: a prediction record lacks \['prediction'"):
        compare_runs(a, tmp_path / "c", "test")


def test_cli_compares_two_seeds_of_a_real_tiny_study(tiny_study):
    runs, _ = tiny_study
    seeds = sorted(runs.glob("F-LoRA*"))
    assert len(seeds) == 2, seeds
    result = CliRunner().invoke(app, ["compare", str(seeds[0]), str(seeds[1]), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # the same numbers counted here from the two runs' predictions.jsonl (closed: a yes/no truth, the default)
    a, b = (
        {r["id"]: r for r in map(json.loads, (s / "eval/test/predictions.jsonl").read_text().splitlines())}
        for s in seeds
    )
    assert a.keys() == b.keys() and len(a) == 8  # data.limit 8
    expected = {"a": str(seeds[0]), "b": str(seeds[1]), "split": "test", "rule": "yesno", "inference": None}
    for group in ("global", "closed", "open"):
        ids = [
            i
            for i in a
            if group == "global" or (a[i]["answer"].strip().lower() in ("yes", "no")) == (group == "closed")
        ]
        only_a = sum(a[i]["correct"] and not b[i]["correct"] for i in ids)
        only_b = sum(b[i]["correct"] and not a[i]["correct"] for i in ids)
        tail = sum(comb(only_a + only_b, k) for k in range(min(only_a, only_b) + 1)) / 2 ** (only_a + only_b)
        expected[group] = {
            "n": len(ids),
            "acc_a": sum(a[i]["correct"] for i in ids) / len(ids) if ids else None,
            "acc_b": sum(b[i]["correct"] for i in ids) / len(ids) if ids else None,
            "only_a": only_a,
            "only_b": only_b,
            "p_mcnemar": min(1.0, 2 * tail),
            "answers_differ": sum(
                a[i]["prediction"].strip().lower() != b[i]["prediction"].strip().lower() for i in ids
            ),
        }
    assert out == expected
    table = CliRunner().invoke(app, ["compare", str(seeds[0]), str(seeds[1])])
    assert table.exit_code == 0 and "exact McNemar" in table.output
    g = expected["global"]
    row = next(line.split() for line in table.output.splitlines() if line.startswith("global "))
    assert row == ["global", str(g["n"]), f"{100 * g['acc_a']:.2f}", f"{100 * g['acc_b']:.2f}",
                   f"{100 * (g['acc_b'] - g['acc_a']):+.2f}", str(g["only_a"]), str(g["only_b"]),
                   f"{g['p_mcnemar']:.4f}", str(g["answers_differ"])]  # fmt: skip


def edit_predictions(run, split="test", **changes):
    """Rewrite a run's predictions: changes = {question id: {field: new value, or None to drop it}}."""
    file = run / "eval" / split / "predictions.jsonl"
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    for row in rows:
        for key, value in changes.get(str(row["id"]), {}).items():
            if value is None:
                row.pop(key, None)
            else:
                row[key] = value
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_ids_that_stand_for_different_questions_are_refused_naming_the_fields(tmp_path):
    a = run_with(tmp_path, "a", ["yes"] * 5)
    b = edit_predictions(
        run_with(tmp_path, "b", ["no"] * 5),
        **{"3": {"question": "which organ is this?", "answer_type": "CLOSED"}, "4": {"image": "x.png"}},
    )
    edit_predictions(a, **{"4": {"image": "y.png"}})
    with pytest.raises(
        CompareError,
        match=r"question id '3' is a different question in .*'test': question 'q' vs 'which organ is this\?'; "
        r"answer_type 'OPEN' vs 'CLOSED' \(1 more ids differ, e\.g\. \['4'\]\)",
    ):
        compare_runs(a, b, "test")


def test_only_fields_both_records_hold_are_compared_and_long_values_are_cut(tmp_path):
    a = run_with(tmp_path, "a", ["yes"] * 5)
    b = edit_predictions(
        run_with(tmp_path, "b", ["no"] * 5), **{"1": {"question": None}, "2": {"answer": "NO "}}
    )
    assert compare_runs(a, b, "test")[0].n == 5  # question 1 has no text in b; "NO " scores as "no"
    edit_predictions(b, **{"5": {"question": "why " * 100}})
    with pytest.raises(CompareError, match=r"question id '5'") as error:
        compare_runs(a, b, "test")
    assert "why why" in str(error.value) and "..." in str(error.value) and len(str(error.value)) < 300


def test_a_subset_or_an_empty_file_is_refused(tmp_path):
    a = run_with(tmp_path, "a", ["yes"] * 5)
    subset = write_predictions(tmp_path / "sub", [(1, "yes", "yes", "CLOSED")])
    with pytest.raises(CompareError, match=r"different questions on 'test': 4 only in the first") as error:
        compare_runs(a, subset, "test")
    assert "only in the second" not in str(error.value)
    empty = tmp_path / "empty" / "eval" / "test"
    empty.mkdir(parents=True)
    (empty / "predictions.jsonl").write_text("")
    with pytest.raises(CompareError, match=r"predictions.jsonl: holds no predictions"):
        compare_runs(tmp_path / "empty", tmp_path / "empty", "test")


def test_inference_reads_each_runs_answers_of_that_mode_wherever_it_keeps_them(tmp_path):
    """A run whose eval.inference is rank keeps its ranked answers in eval/<split>; a generate run given
    `mile eval --inference rank` keeps them in eval/rank/<split>. --inference rank pairs those two."""
    import yaml

    def run(name, own_mode, own, other):
        path = tmp_path / name
        rows = lambda preds: [(q, t, p, k) for (q, t, k), p in zip(QUESTIONS, preds, strict=True)]  # noqa: E731
        write_predictions(path, rows(own))
        other_mode = "generate" if own_mode == "rank" else "rank"
        write_predictions(path, rows(other), split=f"{other_mode}/test")
        (path / "config.yaml").write_text(yaml.safe_dump({"eval": {"inference": own_mode}}))
        return path

    wrong = ["no", "yes", "x", "x", "x"]
    right = ["yes", "no", "lung", "liver", "left"]
    a = run("a", "generate", own=wrong, other=right)  # ranked answers under eval/rank/test
    b = run("b", "rank", own=right, other=wrong)  # ranked answers under eval/test
    assert compare_runs(a, b, "test", inference="rank")[0].only_a == 0  # both right everywhere
    assert compare_runs(a, b, "test", inference="rank")[0].only_b == 0
    assert compare_runs(a, b, "test", inference="generate")[0].only_a == 0  # both wrong everywhere
    assert compare_runs(a, b, "test")[0].only_b == 5  # by path: a's generated against b's ranked
    with pytest.raises(CompareError, match="expected generate or rank"):
        compare_runs(a, b, "test", inference="beam")
    import shutil

    shutil.rmtree(a / "eval" / "rank")  # a never ranked: the command says where it looked and how to add them
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--split", "test", "--inference", "rank"])
    assert isinstance(
        result.exception, CompareError
    )  # the entry point prints it as one line (mile.cli.errors)
    assert str(result.exception) == (
        f"{a / 'eval' / 'rank' / 'test' / 'predictions.jsonl'}: not found; evaluate the run first: "
        f"mile eval {a} --split test --inference rank"
    )
