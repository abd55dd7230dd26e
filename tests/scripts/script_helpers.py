"""The scripts under test in a scratch repository: a copy of the script and study_lib.sh beside a stub `mile`
on PATH that logs its calls, so a test sees what a script runs and keeps without training anything."""

import os
import shutil
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def stub_root(tmp_path: Path, script: str, stub: str) -> Path:
    """tmp_path with scripts/<script>, scripts/study_lib.sh and bin/mile (the stub's bash source)."""
    (tmp_path / "scripts").mkdir()
    for name in (script, "study_lib.sh"):
        shutil.copy(SCRIPTS / name, tmp_path / "scripts" / name)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mile").write_text(stub)
    (tmp_path / "bin" / "mile").chmod(0o755)
    return tmp_path


def run_stubbed(
    root: Path, script: str, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run scripts/<script> in `root` with the stub first on PATH; (the result, the stub's calls in order).
    The stub logs to $CALLS; `env` adds variables the stub reads."""
    calls = root / "calls.txt"
    calls.unlink(missing_ok=True)
    environ = {**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "CALLS": str(calls), **env}
    result = subprocess.run(
        ["bash", str(root / "scripts" / script), *args],
        cwd=root, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result, calls.read_text().splitlines() if calls.exists() else []
