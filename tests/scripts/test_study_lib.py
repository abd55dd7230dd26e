"""scripts/study_lib.sh: the CPU study keeps each finished run's record in git and skips steps already kept."""

import json
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "scripts" / "study_lib.sh"


def bash(cwd: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -u; . {LIB}; {script}"], cwd=cwd, capture_output=True, text=True, check=False
    )


def fake_run(root: Path, rel: str, state: str = "done") -> Path:
    run = root / "runs" / rel
    for sub in ("checkpoints/step-10", "weights", "tb", "eval/validate"):
        (run / sub).mkdir(parents=True)
    (run / "weights" / "model.safetensors").write_bytes(b"\0" * 64)
    (run / "checkpoints" / "step-10" / "state.bin").write_bytes(b"\0" * 64)
    (run / "tb" / "events").write_text("x")
    (run / "config.yaml").write_text("train: {seed: 1}\n")
    (run / "status.json").write_text(json.dumps({"state": state}))
    (run / "eval" / "validate" / "metrics.json").write_text('{"accuracy": 0.5}')
    return run


def test_keep_copies_the_record_without_weights_checkpoints_or_tensorboard(tmp_path):
    fake_run(tmp_path, "study/slake/F-T-T-1234abcd")
    result = bash(tmp_path, "keep runs/study/slake/F-T-T-1234abcd/")
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "docs/study/runs/study/slake/F-T-T-1234abcd"
    files = sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file())
    assert files == ["config.yaml", "eval/validate/metrics.json", "status.json"]


def test_keep_as_another_name_and_kept_globs_only_finished_records(tmp_path):
    fake_run(tmp_path, "study/slake/F-T-T-1234abcd")
    fake_run(tmp_path, "instruct/a-direct", state="running")
    script = (
        "keep runs/study/slake/F-T-T-1234abcd instruct/plain; keep runs/instruct/a-direct; "
        "kept 'study/slake/F-T-T-*' && echo A; kept instruct/plain && echo B; "
        "kept instruct/a-direct || echo C; kept 'study/slake/T-T-T-*' || echo D"
    )
    result = bash(tmp_path, script)
    # kept under the new name only (no A); the unfinished a-direct does not count (C)
    assert result.stdout.split() == ["B", "C", "D"], result.stderr


def test_a_kept_step_is_not_run_again(tmp_path):
    fake_run(tmp_path, "instruct/plain-s2")
    # `mile` is not called for a kept step: a stub that fails proves it
    script = "keep runs/instruct/plain-s2; mile() { echo CALLED; return 1; }; train_kept plain-s2 plain.yaml"
    result = bash(tmp_path, script)
    assert result.returncode == 0 and "kept: plain-s2" in result.stdout and "CALLED" not in result.stdout


def test_an_unfinished_run_is_not_kept(tmp_path):
    fake_run(tmp_path, "instruct/a-direct-s3", state="failed")
    result = bash(tmp_path, "probe_and_keep runs/instruct/a-direct-s3")
    assert result.returncode == 1 and "did not finish" in result.stdout
    assert not (tmp_path / "docs/study/runs/instruct/a-direct-s3").exists()
