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
    (run / ".reserve").write_bytes(b"\0" * 64)  # the run directory's disk reserve (mile.engine.rundir)
    (run / "weights" / "model.safetensors").write_bytes(b"\0" * 64)
    (run / "checkpoints" / "step-10" / "state.bin").write_bytes(b"\0" * 64)
    (run / "tb" / "events").write_text("x")
    (run / "config.yaml").write_text("train: {seed: 1}\n")
    (run / "status.json").write_text(json.dumps({"state": state}))
    (run / "eval" / "validate" / "metrics.json").write_text('{"accuracy": 0.5}')
    return run


def test_keep_copies_the_record_without_weights_checkpoints_tensorboard_or_disk_reserve(tmp_path):
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
    result = bash(tmp_path, "evaluate_and_keep runs/instruct/a-direct-s3")
    assert result.returncode == 1 and "did not finish" in result.stdout
    assert not (tmp_path / "docs/study/runs/instruct/a-direct-s3").exists()


def test_with_study_commit_a_kept_record_is_committed_alone(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "README.md").write_text("x\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "start")
    (tmp_path / "notes.md").write_text("work in progress\n")
    git("add", "notes.md")  # staged by someone else: must stay out of the record's commit
    fake_run(tmp_path, "instruct/plain-s2")
    result = bash(tmp_path, "STUDY_COMMIT=1 keep runs/instruct/plain-s2")
    assert result.returncode == 0, result.stderr
    assert git("log", "-1", "--format=%s").strip() == "study record: instruct/plain-s2"
    committed = git("show", "--name-only", "--format=", "HEAD").split()
    assert "docs/study/runs/instruct/plain-s2/status.json" in committed and "notes.md" not in committed
    assert git("diff", "--cached", "--name-only").split() == ["notes.md"]


def test_the_repository_does_not_ignore_kept_records():
    # `runs/` in .gitignore once matched docs/study/runs too, and a whole session's records were lost with the machine
    repo = LIB.parents[1]
    result = subprocess.run(
        ["git", "check-ignore", "-q", "docs/study/runs/instruct/plain/status.json"], cwd=repo, check=False
    )
    assert result.returncode == 1, "docs/study/runs is git-ignored: kept records would never be committed"
    assert (
        subprocess.run(["git", "check-ignore", "-q", "runs/x/status.json"], cwd=repo, check=False).returncode
        == 0
    )


DRY_RUN = """sweep study.yaml: 2 run(s) in runs/study/slake
 #  name                    plan         varying       status  trainable  total  %
 1  T-T-LoRA-s1-32027b63    T-T-LoRA     train.seed=1  new     1          2      50.0
 2  T-T-LoRA_r4-s1-e5f56f62 T-T-LoRA_r4  train.seed=1  new     1          2      50.0
"""


def test_sweep_kept_runs_exactly_that_run_evaluates_both_modes_and_keeps_it(tmp_path):
    # a stub `mile`: lists the dry run, "trains" by writing the run a sweep would, and logs its calls
    (tmp_path / "dry.txt").write_text(DRY_RUN)
    script = (
        'mile() { echo "$*" >> calls.txt; case "$*" in *--dry-run*) cat dry.txt;; '
        'sweep*) r=runs/study/slake/$4; mkdir -p $r/eval/v && echo \'{"state": "done"}\' > $r/status.json '
        "&& echo 'eval: {inference: generate}' > $r/config.yaml && touch $r/eval/v/probe.json;; "
        "eval*) mkdir -p $2/eval/$4/v && touch $2/eval/$4/v/metrics.json;; esac; }; "
        "sweep_kept T-T-LoRA-s1 s.yaml && sweep_kept T-T-LoRA-s1 s.yaml; sweep_kept T-T-LoRA s.yaml || echo MISSING"
    )
    result = bash(tmp_path, script)
    calls = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "--dry-run" not in c]
    # T-T-LoRA-s1 only (not the r4 run whose name starts alike), trained and ranked once, then skipped as kept
    assert calls == [
        "sweep s.yaml --only T-T-LoRA-s1-32027b63",
        "eval runs/study/slake/T-T-LoRA-s1-32027b63 --inference rank",
    ]
    assert "kept: T-T-LoRA-s1-32027b63" in result.stdout and "MISSING" in result.stdout
    assert (tmp_path / "docs/study/runs/study/slake/T-T-LoRA-s1-32027b63/eval/rank/v/metrics.json").exists()
    assert "no run T-T-LoRA in s.yaml" in result.stderr
