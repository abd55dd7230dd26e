"""The run directory: everything a run produced, written atomically so a kill never leaves half a file.

config.yaml          the resolved config            status.json      running / done / failed (+ error)
env.json             versions, device, precision     params.json      trainable / total per tower
log.txt              human-readable log             train_stats.json peak memory, wall time, throughput
train_log.jsonl      loss, lr, throughput per log   data_report.json bad records per split
tb/                  TensorBoard events             checkpoints/     resumable training state
weights/             trained weights (plan + trainable state) for eval / predict
eval/<split>/        metrics.json, predictions.jsonl
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mile.atomic import atomic_write_json, atomic_write_text
from mile.config import Config, ConfigError, config_differences, validate_config
from mile.safe_yaml import parse_yaml

PACKAGES = (
    "mile-vqa",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "tokenizers",
    "numpy",
    "pillow",
)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def weights(self) -> Path:
        return self.path / "weights"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def create(self, config: Config, **facts: Any) -> RunDir:
        """Write the config and env.json (versions, device, plus `facts` such as the precision used)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_partial_files()
        atomic_write_text(self / "config.yaml", config.to_yaml())
        atomic_write_json(self / "env.json", {**environment(), **facts})
        return self

    def remove_partial_files(self) -> list[Path]:
        """Delete the temp files and folders an interrupted atomic write left (`.<name>.*.tmp`)."""
        import shutil

        stale = sorted(self.path.rglob(".*.tmp"))
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return stale

    def config(self) -> Config:
        file = self / "config.yaml"
        if not file.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.yaml)")
        return validate_config(parse_yaml(file.read_text()) or {}, str(file))

    def config_mismatch(self, cfg: Config) -> str | None:
        """Why this directory does not hold a run of `cfg` (None: it does, or holds no config yet)."""
        if not (self / "config.yaml").is_file():
            return None
        try:
            stored = self.config()
        except ConfigError as exc:
            return f"its config.yaml does not validate any more ({str(exc).splitlines()[-1].strip()})"
        differences = config_differences(stored, cfg)
        return f"its config differs: {differences}" if differences else None

    def status(self) -> dict[str, Any]:
        file = self / "status.json"
        return json.loads(file.read_text()) if file.is_file() else {"state": "new"}

    def set_status(self, state: str, **extra: Any) -> None:
        atomic_write_json(
            self / "status.json", {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        )

    def is_done(self) -> bool:
        return self.status().get("state") == "done"

    def write_json(self, name: str, data: Any) -> Path:
        return atomic_write_json(self / name, data)

    def read_json(self, name: str) -> Any:
        return json.loads((self / name).read_text())

    def log(self, message: str) -> None:
        with open(self / "log.txt", "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        with open(self / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def environment() -> dict[str, Any]:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
        "packages": versions,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }


def _git_commit() -> str | None:
    """The commit of the mile checkout that ran (with `+dirty` when it had local changes), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
