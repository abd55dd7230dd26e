"""The report's table on hand-made run directories: seed aggregation, rules, memory, ranks, CSV, discovery."""

import csv
import json
import statistics

import pytest
from report_helpers import metrics

from mile.report import collect, find_run_dirs, write_report
from mile.report.plots import pareto_front
from mile.report.table import CSV_COLUMNS, build_rows


def rows_of(root, rule="yesno", split=None):
    done, _ = collect(root)
    return build_rows(done, split, rule)


def test_seeds_aggregate_to_mean_and_sample_std(fake_run, runs_root):
    fake_run("a-s1", seed=1, acc=metrics(0.5, 0.8, 0.7))
    fake_run("a-s2", seed=2, acc=metrics(0.6, 0.9, 0.8))
    fake_run("a-s3", seed=3, acc=metrics(0.7, 0.7, 0.9))
    fake_run("b", plan="F-LoRA_r4-LoRA_r4", pct=0.2, acc=metrics(0.1, 0.2, 0.3))
    (row_b, row_a), left = rows_of(runs_root)  # sorted by trainable %
    assert left == [] and row_a.seeds == [1, 2, 3] and row_b.seeds == [1]
    mean, std = row_a.acc["open"]
    assert mean == pytest.approx(60.0) and std == pytest.approx(statistics.stdev([50, 60, 70]))
    assert row_a.acc["global"][0] == pytest.approx(80.0) and row_b.acc["global"] == (
        pytest.approx(30.0),
        None,
    )
    assert row_a.n == {"open": 10, "closed": 20, "global": 30}


def test_the_closed_rule_and_the_caption(fake_run, runs_root):
    fake_run("a", acc=metrics(0.5, 0.8, 0.7, closed_type=0.4))
    assert rows_of(runs_root, "yesno")[0][0].acc["closed"][0] == pytest.approx(80.0)
    assert rows_of(runs_root, "answer_type")[0][0].acc["closed"][0] == pytest.approx(40.0)
    report = write_report(runs_root, rule="answer_type")
    assert "rule `answer_type`" in report.markdown and "split `test`" in report.markdown
    with pytest.raises(ValueError, match="yesno"):
        write_report(runs_root, rule="bogus")


def test_memory_prefers_the_gpu_and_says_which(fake_run, runs_root):
    fake_run("gpu", acc=metrics(0.5, 0.5, 0.5), gpu=2048.0, rss=9000.0)
    fake_run("cpu", plan="F-T-T", acc=metrics(0.5, 0.5, 0.5), rss=512.0, pct=40.0)
    md = write_report(runs_root).markdown
    assert "2,048 MB (GPU alloc)" in md and "512 MB (CPU RSS)" in md and "9,000" not in md


def test_towers_rank_params_and_the_setting_column(fake_run, runs_root):
    fake_run("a", plan="F-LoRA_r4-LoRA_r4", lr=1e-4, acc=metrics(0.5, 0.5, 0.5), pct=0.163)
    fake_run("b", plan="T-T-LoRA", lr=5e-5, acc=metrics(0.5, 0.5, 0.5), pct=61.919)
    fake_run("c", plan="F-F-Prefix", lr=5e-5, acc=metrics(0.5, 0.5, 0.5), pct=3.926)
    rows, _ = rows_of(runs_root)
    assert [(r.towers, r.rank, r.setting) for r in rows] == [
        (("F", "LoRA", "LoRA"), "4", "lr=1e-4"),
        (("F", "F", "Prefix"), "-", "lr=5e-5"),
        (("T", "T", "LoRA"), "8", "lr=5e-5"),
    ]
    md = write_report(runs_root).markdown
    header = "| Setting | ViT | JTM | Dec | Rank | #Params | Memory | Open | Closed | Global | Time (s) | Samples/s | Seeds |"
    assert header in md and "| lr=1e-4 | F | LoRA | LoRA | 4 | 0.163 (1) |" in md


def test_runs_that_computed_in_different_precisions_are_different_rows(fake_run, runs_root):
    # all three configs say mixed_precision: auto; two machines resolved it differently
    fake_run("bf16-s1", seed=1, acc=metrics(0.5, 0.5, 0.5), precision="bf16")
    fake_run("bf16-s2", seed=2, acc=metrics(0.7, 0.5, 0.5), precision="bf16")
    fake_run("fp32-s1", seed=1, acc=metrics(0.6, 0.5, 0.5), precision="fp32")
    rows, _ = rows_of(runs_root)
    assert sorted((r.setting, r.seeds) for r in rows) == [
        ("mixed_precision=bf16", [1, 2]),
        ("mixed_precision=fp32", [1]),
    ]


def test_csv_and_what_is_left_out(fake_run, runs_root):
    fake_run("ok-s1", seed=1, acc=metrics(0.5, 0.5, 0.5))
    fake_run("ok-s2", seed=2, acc=metrics(0.7, 0.5, 0.5))
    fake_run("broken", plan="F-T-T", state="failed")
    fake_run("no-eval", plan="T-F-T")
    report = write_report(runs_root, out=runs_root / "rep")
    with open(runs_root / "rep" / "report.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == CSV_COLUMNS and len(table) == 1
    assert (
        table[0]["n_seeds"] == "2"
        and table[0]["seeds"] == "1 2"
        and float(table[0]["open_acc"]) == pytest.approx(60)
    )
    assert table[0]["runs"] == "ok-s1 ok-s2" and table[0]["rule"] == "yesno"
    reasons = {p.name: why for p, why in [(r.path, w) for r, w in report.left_out]}
    assert reasons == {"no-eval": "no eval/test/metrics.json", "broken": "failed: Boom: it broke"}
    assert "## Not in the table" in report.markdown and "`broken`: failed: Boom: it broke" in report.markdown


def test_plots_are_written(fake_run, runs_root):
    for i, (pct, acc) in enumerate([(0.2, 0.5), (5.0, 0.7), (60.0, 0.6), (100.0, 0.8)]):
        fake_run(
            f"r{i}",
            plan=["F-IA3-IA3", "F-F-Prefix", "T-T-LoRA", "T-T-T"][i],
            pct=pct,
            acc=metrics(acc, acc, acc),
        )
    report = write_report(runs_root)
    pngs = [f for f in report.files if f.suffix == ".png"]
    assert sorted(f.name for f in pngs) == [
        "acc_vs_memory.png",
        "acc_vs_params.png",
        "acc_vs_time.png",
        "loss_curves.png",
    ]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000 for f in pngs)


def test_pareto_front():
    points = [(1, 50), (2, 40), (3, 60), (3, 55), (10, 60), (20, 70)]
    assert pareto_front(points) == [(1, 50), (3, 60), (20, 70)]
    assert pareto_front([]) == []


def test_run_discovery(fake_run, runs_root):
    fake_run("x/deep/run", acc=metrics(0.5, 0.5, 0.5))
    (runs_root / "configs").mkdir()
    (runs_root / "configs" / "config.yaml").write_text("{}")  # a config file, not a run
    (runs_root / "x" / "deep" / "run" / "weights" / "config.yaml").parent.mkdir(exist_ok=True)
    (runs_root / "x" / "deep" / "run" / "weights" / "env.json").write_text("{}")
    (runs_root / "x" / "deep" / "run" / "weights" / "config.yaml").write_text(
        "{}"
    )  # inside a run: not searched
    assert find_run_dirs(runs_root) == [runs_root / "x" / "deep" / "run"]


def test_probe_gaps_become_columns_when_runs_were_probed(fake_run, runs_root):
    def probed(name, seed, image, question):
        run = fake_run(name, seed=seed, acc=metrics(0.5, 0.5, 0.5))
        closed = {"closed": {"gap": {"image": image / 10}}}
        probe = {"gap": {"image": image, "question": question}, "by_answer_type": closed}
        (run / "eval" / "test" / "probe.json").write_text(json.dumps(probe))

    plain = write_report(fake_run("unprobed", plan="F-T-T", acc=metrics(0.5, 0.5, 0.5)).parent).markdown
    assert "Question gap" not in plain and "mile probe" not in plain  # nothing probed: no empty columns
    probed("p-s1", 1, 0.10, 0.9)
    probed("p-s2", 2, 0.20, 1.1)
    report = write_report(runs_root, out=runs_root / "rep")
    row = next(r for r in report.rows if r.plan == "T-T-T")
    assert row.gaps["image"] == (pytest.approx(0.15), pytest.approx(statistics.stdev([0.1, 0.2])))
    assert (
        "| Image gap | Image gap (closed) | Question gap |" in report.markdown
        and "mile probe" in report.markdown
    )
    assert "+0.150 ± 0.071 | +0.015 ± 0.007 | +1.000 ± 0.141 |" in report.markdown
    assert "| - | - | - |" in report.markdown  # the unprobed run
    with open(runs_root / "rep" / "report.csv") as handle:
        by_plan = {line["plan"]: line for line in csv.DictReader(handle)}
    assert (
        float(by_plan["T-T-T"]["question_gap"]) == pytest.approx(1.0) and by_plan["F-T-T"]["image_gap"] == ""
    )


def test_label_dir_names_rows_by_their_run_directories_without_the_seed(fake_run, runs_root):
    fake_run("plain", seed=1, lr=1e-4, acc=metrics(0.5, 0.5, 0.5))
    fake_run("plain-s2", seed=2, lr=1e-4, acc=metrics(0.7, 0.7, 0.7))
    fake_run("a-direct-s3", seed=3, lr=5e-5, acc=metrics(0.6, 0.6, 0.6))
    done, _ = collect(runs_root)
    rows, _ = build_rows(done, None, "yesno", label="dir")
    assert sorted((r.setting, r.seeds) for r in rows) == [("a-direct", [3]), ("plain", [1, 2])]
    assert sorted(r.setting for r in build_rows(done, None, "yesno")[0]) == ["lr=1e-4", "lr=5e-5"]
    assert "| a-direct |" in write_report(runs_root, label="dir").markdown
    with pytest.raises(ValueError, match="unknown setting label 'name'"):
        write_report(runs_root, label="name")


def test_a_corrupt_metrics_json_is_not_called_missing(fake_run, runs_root):
    fake_run("ok", acc=metrics(0.5, 0.5, 0.5))
    fake_run("no-eval", plan="T-F-T")
    fake_run("not-json", plan="F-T-T", acc=metrics(0.5, 0.5, 0.5))
    (runs_root / "not-json" / "eval" / "test" / "metrics.json").write_text('{"global": {"acc": 0.5,')
    fake_run("no-rules", plan="F-F-T", acc={"split": "test", "global": {"acc": 0.5, "n": 30}})
    fake_run("percent", plan="T-T-F", acc=metrics(50, 80, 70))  # percentages where fractions belong
    fake_run("a-list", plan="T-F-F", acc=[0.5])
    report = write_report(runs_root)
    reasons = {r.path.name: why for r, why in report.left_out}
    assert [r.runs[0].path.name for r in report.rows] == ["ok"]
    assert reasons["no-eval"] == "no eval/test/metrics.json"
    assert reasons["not-json"].startswith("corrupt eval/test/metrics.json (not JSON: ")
    assert reasons["no-rules"] == "corrupt eval/test/metrics.json (lacks rules.yesno.open)"
    assert reasons["percent"] == "corrupt eval/test/metrics.json (global.acc is 70, not a fraction in [0, 1])"
    assert reasons["a-list"] == "corrupt eval/test/metrics.json (holds a JSON list, not an object)"
    assert "`not-json`: corrupt eval/test/metrics.json (not JSON" in report.markdown


def test_garbled_run_files_leave_the_run_out_with_the_reason(fake_run, runs_root):
    fake_run("ok", acc=metrics(0.5, 0.5, 0.5))
    garbled = {
        "status.json": '{"state": "do',
        "config.yaml": "plan: [frozen\ntrain: {lr: : 1}\n",
        "params.json": "[1, 2]",
        "train_stats.json": "\xff\xfe",
        "eval/test/probe.json": "{",
    }
    for number, name in enumerate(garbled):
        fake_run(f"bad-{number}", seed=10 + number, acc=metrics(0.5, 0.5, 0.5))
        (runs_root / f"bad-{number}" / name).write_bytes(garbled[name].encode("latin-1"))
    fake_run("list-status", seed=20, acc=metrics(0.5, 0.5, 0.5))
    (runs_root / "list-status" / "status.json").write_text('["done"]')
    report = write_report(runs_root)
    reasons = {r.path.name: why for r, why in report.left_out}
    assert [r.runs[0].path.name for r in report.rows] == ["ok"]
    assert reasons["bad-0"].startswith("invalid: corrupt status.json (not JSON: ")
    assert (
        reasons["bad-1"].startswith("invalid: corrupt config.yaml (not YAML: ")
        and "at line 2" in reasons["bad-1"]
    )
    assert reasons["bad-2"] == "invalid: corrupt params.json (holds a JSON list, not an object)"
    assert reasons["bad-3"].startswith("invalid: corrupt train_stats.json (UnicodeDecodeError")
    assert reasons["bad-4"].startswith("corrupt eval/test/probe.json (not JSON: ")
    assert reasons["list-status"] == "invalid: corrupt status.json (holds a JSON list, not an object)"


def test_inference_tabulates_each_runs_answers_of_that_mode_wherever_it_keeps_them(fake_run, runs_root):
    ranked = fake_run("a-s1", seed=1, acc=metrics(0.5, 0.8, 0.7))
    generated = fake_run("a-s2", seed=2, acc=metrics(0.6, 0.9, 0.8))  # its own eval.inference: generate
    config = ranked / "config.yaml"  # a run whose own mode is rank keeps those answers in eval/test
    config.write_text(config.read_text().replace("inference: generate", "inference: rank"))
    (ranked / "eval" / "generate" / "test").mkdir(parents=True)  # what `mile eval --inference generate` adds
    (ranked / "eval" / "generate" / "test" / "metrics.json").write_text(json.dumps(metrics(0.1, 0.2, 0.3)))
    done, _ = collect(runs_root)
    (row,), left = build_rows(done, None, "yesno", inference="generate")
    assert left == [] and row.seeds == [1, 2] and row.inference == "generate"
    assert row.acc["global"][0] == pytest.approx(55.0)  # (30 + 80) / 2
    (row,), left = build_rows(done, None, "yesno", inference="rank")
    assert [r.path.name for r in row.runs] == ["a-s1"] and row.acc["global"][0] == pytest.approx(70.0)
    assert left[0][0].path.name == "a-s2"
    assert left[0][1] == f"no eval/rank/test/metrics.json (mile eval {generated} --inference rank)"
    rows, _ = build_rows(done, None, "yesno")  # each run's own answers: the modes differ, so two rows
    assert sorted(r.inference for r in rows) == ["generate", "rank"]
    report = write_report(runs_root, inference="generate")
    assert "split `test` of the `generate` answers" in report.markdown
    with pytest.raises(ValueError, match="unknown inference mode 'beam'"):
        write_report(runs_root, inference="beam")


def test_what_each_task_stores_is_a_column_once_a_run_measured_it(fake_run, runs_root):
    fake_run("full", acc=metrics(0.5, 0.5, 0.5))
    assert "Stored" not in write_report(runs_root).markdown  # no run measured it: no column of n/a
    fake_run("lora-s1", plan="F-LoRA_r4-LoRA_r4", pct=0.4, acc=metrics(0.5, 0.5, 0.5), stored=0.5)
    fake_run("lora-s2", plan="F-LoRA_r4-LoRA_r4", pct=0.4, seed=2, acc=metrics(0.5, 0.5, 0.5), stored=0.7)
    fake_run("tt", plan="F-T-T", pct=70.0, acc=metrics(0.5, 0.5, 0.5), stored=200.0)
    md = write_report(runs_root).markdown
    header = md.splitlines()[4]
    assert "| #Params | Memory | Stored | Open |" in header
    cells = [line.strip("| ").split(" | ") for line in md.splitlines()[6:9]]
    stored_by_plan = {"-".join(c[:3]): c[6] for c in cells}
    assert stored_by_plan == {"F-LoRA-LoRA": "0.60 MB", "F-T-T": "200 MB", "T-T-T": "n/a"}  # seeds: the mean
    assert "Stored = what a run must keep for its task" in md
    with open(runs_root / "report.csv", newline="") as handle:
        stored = sorted(str(r["stored_mb"]) for r in csv.DictReader(handle))
    assert stored == ["", "0.6", "200.0"]
