"""`mile report` on a real tiny study trained by a sweep: rows, seed aggregation, CSV, PNGs, the command."""

import csv
import json
import shutil
import statistics

import pytest
from typer.testing import CliRunner

from mile.cli.main import app
from mile.report import write_report
from mile.report.table import CSV_COLUMNS


def test_the_sweep_recorded_the_failure_and_the_real_runs(tiny_study):
    runs, summary = tiny_study
    failed = summary.failed[0]
    assert "/no/such" in failed.error
    status = json.loads((runs / failed.run.name / "status.json").read_text())
    assert status["state"] == "failed"
    for outcome in summary.outcomes[:3]:
        run = runs / outcome.run.name
        assert {"config.yaml", "params.json", "train_stats.json", "train_log.jsonl"} <= {
            p.name for p in run.iterdir()
        }


def test_table_rows_and_seed_aggregation(tiny_study, tmp_path):
    runs, summary = tiny_study
    report = write_report(runs, out=tmp_path)
    assert sorted((r.plan, len(r.runs)) for r in report.rows) == [("F-F-PTV2", 1), ("F-LoRA_r4-LoRA_r4", 2)]
    assert report.rows[0].params_pct < report.rows[1].params_pct  # sorted by trainable %
    lora = next(r for r in report.rows if r.plan == "F-LoRA_r4-LoRA_r4")
    per_seed = [json.loads((r.path / "eval" / "test" / "metrics.json").read_text()) for r in lora.runs]
    closed = [100 * m["rules"]["yesno"]["closed"]["acc"] for m in per_seed]
    assert lora.acc["closed"][0] == pytest.approx(statistics.fmean(closed))
    assert lora.acc["closed"][1] == pytest.approx(statistics.stdev(closed))
    params = json.loads((lora.runs[0].path / "params.json").read_text())
    assert lora.params_pct == params["trainable_pct"] and lora.memory_kind == "CPU RSS" and lora.memory_mb > 0
    assert f"| F | LoRA | LoRA | 4 | {params['trainable_pct']:.3f} (" in report.markdown
    assert " ± " in report.markdown and "| 2 | 0/8/8 |" in report.markdown
    assert [r.path.name for r, _ in report.left_out] == [summary.failed[0].run.name]
    with open(tmp_path / "report.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == CSV_COLUMNS and sorted(t["n_seeds"] for t in table) == ["1", "2"]
    for name in ("acc_vs_params.png", "acc_vs_memory.png", "acc_vs_time.png", "loss_curves.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_the_report_command(tiny_study, tmp_path):
    runs, _ = tiny_study
    result = CliRunner().invoke(app, ["report", str(runs), "--rule", "answer_type", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| ViT | JTM | Dec | Rank | #Params | Memory | Stored | Open | Closed | Global |" in result.output
    assert "rule `answer_type`" in result.output and "Not in the table" in result.output
    assert (tmp_path / "report.md").is_file() and (tmp_path / "loss_curves.png").is_file()
    with pytest.raises(FileNotFoundError, match="is not a directory"):  # a user error: one line, exit code 2
        write_report(tmp_path / "nope")


def test_a_probed_run_reports_its_gaps(tiny_study, tmp_path):
    runs, _ = tiny_study
    source = next(p for p in runs.iterdir() if p.name.startswith("F-F-PTV2"))
    shutil.copytree(source, tmp_path / "runs" / source.name)
    result = CliRunner().invoke(app, ["probe", str(tmp_path / "runs" / source.name), "--limit", "8"])
    assert result.exit_code == 0, result.output
    probe = json.loads((tmp_path / "runs" / source.name / "eval" / "test" / "probe.json").read_text())
    (row,) = write_report(tmp_path / "runs").rows
    assert row.gaps["question"][0] == pytest.approx(probe["gap"]["question"])
    assert row.gaps["image"][0] == pytest.approx(probe["gap"]["image"])
    closed = probe["by_answer_type"].get("closed")
    assert row.gaps["image_closed"][0] == (pytest.approx(closed["gap"]["image"]) if closed else None)
