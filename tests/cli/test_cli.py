"""The `mile` command as a user runs it: subprocesses, exit codes, printed output."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mile.cli.main import app
from mile.config import MAX_BEAMS


def mile(*args, cwd=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "mile", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mile {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A finished one-epoch run of the demo's base config (the tiny model from scratch on the bundled subset);
    `mile demo` itself is tests/cli/test_demo.py's."""
    out = tmp_path_factory.mktemp("runs")
    proc = mile("train", DEMO_CONFIG, f"run.output_dir={out}", "train.epochs=1")
    return out / "demo", proc


def test_demo_trains_and_reports(demo_run):
    run, proc = demo_run
    assert "global" in proc.stdout and "closed by answer_type" in proc.stdout and "(n=164)" in proc.stdout
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n"] == 164 and metrics["rules"]["answer_type"]["closed"]["n"] == 103


def _simple(answer):  # close enough to normalize_answer for VQA-RAD's English answers
    return " ".join(re.sub(r"[^\w\s]", " ", str(answer).lower()).split())


def _cell(rows):
    acc = sum(r["correct"] for r in rows) / len(rows)
    return f"{100 * acc:.2f}% (n={len(rows)})"


def test_eval_and_predict_on_a_finished_run(demo_run, demo_data):
    run, trained = demo_run
    test_file = run / "eval" / "test" / "predictions.jsonl"
    at_training = [json.loads(line) for line in test_file.read_text().splitlines()]
    proc = mile("eval", run, "--split", "train", "--split", "test")
    # the reloaded run answers the test split exactly as the trained model did at the end of training
    assert [json.loads(line) for line in test_file.read_text().splitlines()] == at_training
    test_global = next(line for line in trained.stdout.splitlines() if line.startswith("test: global"))
    assert test_global in proc.stdout.splitlines()
    # train: every question of trainset.json, each scored right iff its answer is the truth, and the printed
    # accuracies are those of the predictions
    records = json.loads((demo_data / "trainset.json").read_text())
    rows = [
        json.loads(line) for line in (run / "eval" / "train" / "predictions.jsonl").read_text().splitlines()
    ]
    assert sorted(r["id"] for r in rows) == sorted(str(r["qid"]) for r in records)
    assert all(r["correct"] == (_simple(r["prediction"]) == _simple(r["answer"])) for r in rows)
    closed = [r for r in rows if r["answer_type"].strip().upper() == "CLOSED"]
    open_ = [r for r in rows if r not in closed]
    yes_no = [r for r in rows if _simple(r["answer"]) in ("yes", "no")]
    other = [r for r in rows if r not in yes_no]
    assert (len(rows), len(closed), len(yes_no)) == (391, 220, 212)
    lines = proc.stdout.splitlines()
    assert f"train: global {_cell(rows)}" in lines
    assert f"  closed by answer_type closed {_cell(closed)}  open {_cell(open_)}" in lines
    assert f"  closed by yesno       closed {_cell(yes_no)}  open {_cell(other)}" in lines
    metrics = json.loads((run / "eval" / "train" / "metrics.json").read_text())
    assert metrics["n"] == 391 and metrics["global"]["acc"] == sum(r["correct"] for r in rows) / 391
    # predict: the answers the trained model gave at training's evaluation to the same image and questions
    image = sorted((demo_data / "images").iterdir())[0]
    asked = [
        r for r in json.loads((demo_data / "testset.json").read_text()) if r["image_name"] == image.name
    ][:2]
    expected = {r["id"]: r["prediction"] for r in at_training}
    proc = mile("predict", run, "--image", image, *[a for r in asked for a in ("--question", r["question"])])
    assert proc.stdout == "".join(f"Q: {r['question']}\nA: {expected[str(r['qid'])]}\n" for r in asked)


def test_eval_by_ranking_picks_training_answers_and_keeps_the_generated_results(demo_run, demo_data):
    from mile.engine.candidates import candidates_from

    run, _ = demo_run
    generated = (run / "eval" / "test" / "metrics.json").read_text()
    proc = mile("eval", run, "--inference", "rank")
    assert (run / "eval" / "test" / "metrics.json").read_text() == generated  # the run's own mode, untouched
    metrics = json.loads((run / "eval" / "rank" / "test" / "metrics.json").read_text())
    rows = [
        json.loads(x) for x in (run / "eval" / "rank" / "test" / "predictions.jsonl").read_text().splitlines()
    ]
    candidates = candidates_from(
        [str(r["answer"]) for r in json.loads((demo_data / "trainset.json").read_text())]
    )
    assert metrics["inference"] == "rank" and len(rows) == 164
    assert {r["prediction"] for r in rows} <= set(candidates)  # every answer is a training answer
    assert metrics["global"]["acc"] == sum(r["correct"] for r in rows) / 164
    assert f"test: global {_cell(rows)}" in proc.stdout.splitlines()
    assert "candidate answers" in (run / "log.txt").read_text()
    image = sorted((demo_data / "images").iterdir())[0]
    proc = mile("predict", run, "--image", image, "--question", "is there a fracture?", "--rank", "3")
    lines = proc.stdout.splitlines()
    assert lines[2] == "ranked candidates for 'is there a fracture?' (log-likelihood, nats):"
    scores = [float(line.split()[0]) for line in lines[3:]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert all(line.split(maxsplit=1)[1] in candidates for line in lines[3:])


def test_predict_refuses_blank_questions_and_bad_beam_counts(demo_run, demo_data):
    run, _ = demo_run
    image = sorted((demo_data / "images").iterdir())[0]
    ask = ["predict", run, "--image", image, "--question", "what organ?"]
    proc = mile(*ask, "--question", "  ", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "A: " not in proc.stdout
    assert "question 2 of 2 is blank" in proc.stderr
    for beams in ("0", "-2", str(MAX_BEAMS + 1)):  # 0 used to mean "the run's count"
        proc = mile(*ask, f"--beams={beams}", check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--beams" in proc.stderr, beams


def test_predict_beams_bounds_are_eval_num_beams_bounds(tmp_path):
    # in-process: the parser's bounds, before the (missing) run is opened
    ask = ["predict", str(tmp_path / "no-run"), "--image", "x.png", "--question", "what organ?"]
    refused = CliRunner().invoke(app, [*ask, "--beams", str(MAX_BEAMS + 1)])
    assert refused.exit_code == 2 and "--beams" in refused.output
    parsed = CliRunner().invoke(app, [*ask, "--beams", str(MAX_BEAMS)])
    assert isinstance(parsed.exception, FileNotFoundError) and "no-run" in str(parsed.exception)


DEMO_CONFIG = Path(__file__).resolve().parents[2] / "mile" / "resources" / "configs" / "demo.yaml"


def test_probe_writes_the_losses_with_swapped_inputs(demo_run):
    run, _ = demo_run
    proc = mile("probe", run, "--limit", "16")
    assert "other image" in proc.stdout and "the model " in proc.stdout
    result = json.loads((run / "eval" / "test" / "probe.json").read_text())
    assert (
        result["split"] == "test"
        and result["n"] == 16
        and set(result["gap"]) == {"image", "question", "both"}
    )


def test_training_a_finished_run_again_trains_nothing(demo_run):
    run, _ = demo_run
    weights = sorted((run / "weights").iterdir())
    stamps = [w.stat().st_mtime_ns for w in weights]
    proc = mile("train", DEMO_CONFIG, f"run.output_dir={run.parent}", "train.epochs=1")
    assert "already done" in proc.stdout and "test: global" in proc.stdout
    assert [w.stat().st_mtime_ns for w in weights] == stamps


def test_resuming_into_a_run_of_another_config_is_refused(demo_run):
    run, _ = demo_run
    proc = mile("train", DEMO_CONFIG, f"run.output_dir={run.parent}", "train.epochs=2", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train.epochs (run: 1, now: 2)" in proc.stderr and "--restart" in proc.stderr


def test_restart_deletes_the_previous_contents(tmp_path):
    stale = tmp_path / "demo" / "eval" / "test" / "metrics.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    missing = tmp_path / "no-data"
    args = [f"run.output_dir={tmp_path}", "data.dataset=vqa_rad", f"data.root={missing}"]
    proc = mile("train", DEMO_CONFIG, *args, "--restart", check=False)
    assert "deleting the previous contents" in proc.stdout and not stale.exists()
    assert proc.returncode == 2 and "no-data" in proc.stderr  # then fails on the data, as it should


def test_modules_json_schema():
    proc = mile("modules", "--json", "plan.vision=frozen", "plan.text_decoder=lora")
    data = json.loads(proc.stdout)
    assert set(data) == {"towers", "total", "trainable", "trainable_pct"}
    assert set(data["towers"]) == {"vision", "text_encoder", "text_decoder"}
    assert data["towers"]["vision"]["trainable"] == 0 and 0 < data["trainable_pct"] < 100


def test_modules_prints_the_load_report(shared_dir):
    # mile-small composed from DINOv2 + MiniLM: the cross-attention and the [ENC]/[DEC] rows start fresh
    proc = mile(
        "modules", "--config", "configs/slake/mile-small.yaml", "--depth", "1", cwd=Path(__file__).parents[2]
    )
    lines = proc.stdout.splitlines()
    loaded = next(x for x in lines if x.startswith("loaded "))
    assert int(loaded.split()[1]) > 100 and "dinov2-small" in loaded and "minilm" in loaded
    fresh = next(x for x in lines if x.startswith("newly initialised: "))
    assert "cross_attn" in fresh and "(125 in all)" in fresh


def test_bad_config_is_one_clear_message_and_exit_code_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lr: -1, epochs: x}\nplan: {vision: lorra}\n")
    proc = mile("train", cfg, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.lr" in proc.stderr and "train.epochs" in proc.stderr and "plan.vision" in proc.stderr


def test_missing_dataset_root_is_clear(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    proc = mile(
        "train",
        empty,
        "data.dataset=slake",
        f"data.root={tmp_path / 'nope'}",
        "model.size=tiny",
        f"run.output_dir={tmp_path}",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope" in proc.stderr


def test_instruct_build(tmp_path, demo_data):
    out = tmp_path / "ins.json"
    proc = mile("instruct", "build", "--source", f"vqa_rad:test={demo_data}", "--out", out)
    summary = json.loads(proc.stdout)
    records = json.loads(out.read_text())
    assert len(records) == 164 and summary["out_path"] == str(out)
    assert all(r["question_pool"] and r["img_name"].startswith("vqa-rad/") for r in records)


FULL_DISK = """
import errno, sys, torch

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

torch.save = full  # the first checkpoint's optimizer state meets a full disk
sys.argv = ["mile", *sys.argv[1:]]
from mile.cli.main import main
main()
"""


def test_a_full_disk_is_one_line_exit_code_2_and_a_failed_status(tmp_path):
    args = [
        "train",
        DEMO_CONFIG,
        "train.epochs=1",
        "data.limit=8",
        f"run.output_dir={tmp_path}",
        "run.name=r",
    ]
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: cannot write" in proc.stderr and "disk is full" in proc.stderr
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["state"] == "failed" and "No space left on device" in status["error"]


def test_eval_data_overrides_with_duplicate_keys_are_refused(demo_run):
    proc = mile("eval", demo_run[0], "--data", "options={a: 1, a: 2}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "duplicate key 'a'" in proc.stderr
