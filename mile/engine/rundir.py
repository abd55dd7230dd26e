"""The run directory: everything a run produced, written atomically so a kill never leaves half a file.

config.yaml          the resolved config            status.json      running / done / failed (+ error)
env.json             versions, device, precision     params.json      trainable / total per tower
log.txt              human-readable log             train_stats.json peak memory, wall time, throughput
train_log.jsonl      loss, lr, throughput per log   data_report.json bad records per split
tb/                  TensorBoard events             checkpoints/     resumable training state
weights/             what the run trained (plan.json, peft files per tower, manifest.json of digests)
.reserve             256 KiB set aside for status.json, freed when the disk fills up
eval/<split>/        metrics.json, predictions.jsonl
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mile.atomic import WriteError, append_line, atomic_write_json, atomic_write_text, write_failure
from mile.config import Config, ConfigError, config_differences, validate_config
from mile.safe_yaml import parse_yaml

# Set aside at creation and deleted when the disk is full, so that the final status can still be written.
RESERVE, RESERVE_BYTES = ".reserve", 256 * 1024

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

    def inference_tag(self, inference: str | None) -> str:
        """The folder under eval/ that holds this run's `inference` (generate / rank) answers: "" for the run's
        own eval.inference (eval/<split>), the mode's name for one `mile eval --inference` added."""
        return "" if inference in (None, self.config().eval.inference) else inference

    def create(self, config: Config, **facts: Any) -> RunDir:
        """Write the config and env.json (versions, device, plus `facts` such as the precision used), and set
        aside the space the final status will need."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.path, exc) from exc
        # the temp files and folders an interrupted atomic write left (`.<name>.*.tmp`)
        for stale in sorted(self.path.rglob(".*.tmp")):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        self._reserve()
        atomic_write_text(self / "config.yaml", config.to_yaml())
        atomic_write_json(self / "env.json", {**environment(), **facts})
        return self

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
        """The run's status; `unreadable` (with the reason) when status.json is not a JSON object with a state,
        so that nothing takes such a run for done."""
        file = self / "status.json"
        if not file.is_file():
            return {"state": "new"}
        try:
            status = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return {"state": "unreadable", "error": f"{file} cannot be read ({exc})"}
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            return {"state": "unreadable", "error": f"{file} holds no state"}
        return status

    def set_status(self, state: str, **extra: Any) -> None:
        """Write status.json. When the disk is full, the reserve file set aside at creation is given up so
        that a final status (`done`, `failed`) can still be written."""
        status = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        try:
            atomic_write_json(self / "status.json", status)
        except WriteError:
            reserve = self / RESERVE
            if state == "running" or not reserve.is_file():
                raise
            reserve.unlink()
            atomic_write_json(self / "status.json", status)

    def record_failure(self, exc: BaseException) -> None:
        """Mark the run failed with a one-line reason; when even that cannot be written, say so on stderr (the
        process then exits non-zero with `exc`)."""
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()
        try:
            self.set_status("failed", error=reason[0] if reason else type(exc).__name__)
        except (WriteError, OSError) as second:
            print(f"mile: could not mark {self.path} failed: {second}", file=sys.stderr)

    def _reserve(self) -> None:
        reserve = self / RESERVE
        if not reserve.is_file():
            try:
                reserve.write_bytes(b"\0" * RESERVE_BYTES)
            except OSError:
                reserve.unlink(missing_ok=True)  # already full: the run will fail at its first write

    def is_done(self) -> bool:
        return self.status().get("state") == "done"

    def write_json(self, name: str, data: Any) -> Path:
        return atomic_write_json(self / name, data)

    def read_json(self, name: str) -> Any:
        return json.loads((self / name).read_text())

    def log(self, message: str) -> None:
        append_line(self / "log.txt", f"{time.strftime('%H:%M:%S')} {message}")

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        append_line(self / name, json.dumps(record))

    def trim_jsonl(self, name: str, last_step: int) -> int:
        """Drop the records of `name` logged after `last_step` (a resumed run logs those steps again); a
        torn last line (a kill mid-write) goes too. Returns how many lines were dropped."""
        file = self / name
        if not file.is_file():
            return 0
        lines = file.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= last_step:
                kept.append(line)
        if len(kept) != len(lines):
            atomic_write_text(file, "".join(f"{line}\n" for line in kept))
        return len(lines) - len(kept)


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
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
    }


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor()): bf16 kernels differ between CPU
    kinds (AMX on a Xeon, AVX512_BF16 on a Zen 4), so runs are bit-identical only on the same kind."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    """The commit of the mile checkout that ran (with `+dirty` when it had local changes), if it is one."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
