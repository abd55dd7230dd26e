"""Chaos (slow suite): a training run killed at random moments again and again, or run out of disk space again
and again, and resumed each time, ends byte-identical to an uninterrupted run: weights, metrics, predictions and
the training log."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CONFIG = """
model: {size: tiny, image_size: 32}
plan: {vision: full, text_encoder: full, text_decoder: {method: lora, r: 4}}
data: {dataset: demo, limit: 32}
train: {epochs: 2, batch_size: 4, lr: 0.001, log_every: 1, seed: 3, checkpoint_every: 1, eval_every: 1}
eval: {batch_size: 8, num_beams: 2, max_new_tokens: 3}
"""
KILLS = 8
STEPS = 16  # 32 questions in batches of 4, two epochs
UNSHARE = shutil.which("unshare")


def _train(cfg: Path, out: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "mile", "train", str(cfg), f"run.output_dir={out}", f"run.name={name}"]


def _assert_same_run(whole: Path, other: Path) -> None:
    assert (whole / "weights" / "manifest.json").read_bytes() == (
        other / "weights" / "manifest.json"
    ).read_bytes()
    for name in ("eval/test/metrics.json", "eval/test/predictions.jsonl", "eval/epoch-1/test/metrics.json"):
        assert (whole / name).read_bytes() == (other / name).read_bytes(), name
    logs = [[json.loads(x) for x in (r / "train_log.jsonl").read_text().splitlines()] for r in (whole, other)]
    assert [(r["step"], r["loss"], r["lr"]) for r in logs[0]] == [
        (r["step"], r["loss"], r["lr"]) for r in logs[1]
    ]
    assert json.loads((other / "status.json").read_text())["state"] == "done"


def _last_step(run: Path) -> int:
    try:
        return int((run / "checkpoints" / "last").read_text().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.fixture
def whole(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    subprocess.run(_train(cfg, tmp_path, "whole"), check=True, capture_output=True, timeout=600)
    return cfg, tmp_path / "whole"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_again_and_again_then_resumed_ends_byte_identical(whole, tmp_path, seed):
    cfg, whole_run = whole
    rng = random.Random(seed)
    # kill moments: once the checkpoint of a random step is on disk, plus up to 0.4 s (mid step, mid checkpoint
    # write, mid evaluation after step 8 or 16, or during start-up when the target is already passed)
    targets = sorted(rng.randint(0, STEPS) for _ in range(KILLS))
    run, kills, processes, err = tmp_path / "broken", 0, 0, tmp_path / "stderr.txt"
    while True:  # until a process is let finish
        processes += 1
        with open(err, "w") as stderr:
            proc = subprocess.Popen(_train(cfg, tmp_path, "broken"), stdout=subprocess.DEVNULL, stderr=stderr)
            if kills < KILLS:
                deadline = time.time() + 300
                while _last_step(run) < targets[kills] and proc.poll() is None and time.time() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.4))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            proc.wait(timeout=600)
        assert proc.returncode == 0, err.read_text()[-2000:]
        break
    print(f"seed {seed}: {kills} kills, {processes} processes")  # shown on failure
    assert kills >= KILLS // 2, "the run kept finishing before it could be killed"
    assert (run / "log.txt").read_text().count("resumed from") >= 1
    _assert_same_run(whole_run, run)


@pytest.mark.slow
def test_a_disk_that_fills_up_again_and_again_then_resumed_ends_byte_identical(whole, tmp_path):
    cfg, whole_run = whole
    if UNSHARE is None or subprocess.run([UNSHARE, "-rm", "true"], capture_output=True).returncode != 0:
        _fill_with_a_patched_writer(cfg, tmp_path, whole_run)
        return
    rng = random.Random(7)
    free_kib = [rng.randint(0, 30_000) for _ in range(8)]  # the run needs about 28 MB at its peak
    out = tmp_path / "tmpfs-out"
    out.mkdir()
    script = textwrap.dedent(
        f"""
        set -u
        mnt=$(mktemp -d)
        mount -t tmpfs -o size=64m tmpfs "$mnt"
        i=0
        for free in {" ".join(map(str, free_kib))}; do
            avail=$(df --output=avail -k "$mnt" | tail -1)
            if [ "$avail" -gt "$free" ]; then head -c $(( (avail - free) * 1024 )) /dev/zero > "$mnt/filler"; fi
            {" ".join(_train(cfg, Path("$mnt"), "r"))} > {out}/attempt-$i.txt 2>&1
            echo $? > {out}/rc-$i
            cp "$mnt/r/status.json" {out}/status-$i.json 2>/dev/null
            rm -f "$mnt/filler"
            i=$((i + 1))
        done
        {" ".join(_train(cfg, Path("$mnt"), "r"))} > {out}/final.txt 2>&1
        echo $? > {out}/rc-final
        cp -r "$mnt/r" {out}/r
        umount "$mnt" && rmdir "$mnt"
        """
    )
    subprocess.run([UNSHARE, "-rm", "bash", "-c", script], check=True, timeout=1800)
    failed = 0
    for i, free in enumerate(free_kib):
        rc, text = int((out / f"rc-{i}").read_text()), (out / f"attempt-{i}.txt").read_text()
        assert "Traceback" not in text, f"attempt {i} ({free} KiB free):\n{text[-3000:]}"
        if rc != 0:
            failed += 1
            assert rc == 2 and "error: cannot write" in text, (
                f"attempt {i} ({free} KiB free):\n{text[-3000:]}"
            )
            if (out / f"status-{i}.json").is_file():
                status = json.loads((out / f"status-{i}.json").read_text())
                assert status["state"] == "failed" and "\n" not in status["error"], status
            else:  # not even the run folder could be written: said on stderr
                assert "could not mark" in text, text[-3000:]
    print(f"free KiB {free_kib}: {failed} attempts failed")
    assert failed >= 3, "the disk never filled up: the sizes no longer match the run"
    assert (out / "rc-final").read_text().strip() == "0", (out / "final.txt").read_text()[-3000:]
    _assert_same_run(whole_run, out / "r")


@pytest.mark.slow
def test_writers_that_fail_at_random_budgets_then_resumed_end_byte_identical(whole, tmp_path):
    """The fallback above, run everywhere, so that it keeps patching the writers the code really uses."""
    cfg, whole_run = whole
    _fill_with_a_patched_writer(cfg, tmp_path, whole_run)


def _fill_with_a_patched_writer(cfg: Path, tmp_path: Path, whole_run: Path) -> None:
    """Where no tmpfs can be mounted: the run's writers raise ENOSPC once a random byte budget is spent."""
    from mile.config import load_config
    from mile.engine.rundir import RunDir
    from mile.engine.train import train_run

    config = load_config(cfg, [f"run.output_dir={tmp_path}", "run.name=r"])
    run, rng, failed = RunDir(tmp_path / "r"), random.Random(7), 0
    for _ in range(8):
        with _disk_budget(rng.randint(0, 30_000_000)):
            try:
                train_run(config, run)
            except Exception as exc:  # noqa: BLE001 - the chaos: only write errors may come out
                from mile.atomic import WriteError

                assert isinstance(exc, WriteError), repr(exc)
                assert run.status()["state"] == "failed"
                failed += 1
    assert failed >= 3
    train_run(config, run)
    _assert_same_run(whole_run, run.path)


class _disk_budget:
    """Patch the writers a run uses so that they fail with ENOSPC once `budget` bytes have been written."""

    # every function through which a run writes a file: atomic.atomic_write (JSON, text, features, native
    # checkpoints) and the weights writers that write in place inside a temporary folder
    WRITERS = (
        ("mile.atomic", "atomic_write"),
        ("mile.tuning.io", "save_file"),
        ("mile.tuning.peft_method", "save_file"),
        ("torch", "save"),
    )

    def __init__(self, budget: int):
        self.left, self.refunded = budget, False

    def __enter__(self):
        import importlib

        self.saved = [(importlib.import_module(m), n) for m, n in self.WRITERS]
        self.saved = [(module, name, getattr(module, name)) for module, name in self.saved]

        from mile.engine.rundir import RESERVE, RESERVE_BYTES

        def spend(path):
            size = Path(path).stat().st_size if Path(path).exists() else 0
            self.left -= size
            if self.left < 0 and not self.refunded and not (Path(path).parent / RESERVE).exists():
                self.left, self.refunded = self.left + RESERVE_BYTES, True  # the run gave up its reserve file
            if self.left < 0:
                self.left += size  # like a real disk: the refused file's bytes are free again
                Path(path).unlink(missing_ok=True)
                raise OSError(errno.ENOSPC, "No space left on device")

        def patched(name, real):
            if name == "atomic_write":
                return lambda target, fn: real(target, lambda tmp: (fn(tmp), spend(tmp)))

            def write(obj, path, *a, **k):
                real(obj, path, *a, **k)
                spend(path)

            return write

        for module, name, real in self.saved:
            setattr(module, name, patched(name, real))
        return self

    def __exit__(self, *exc):
        for module, name, real in self.saved:
            setattr(module, name, real)
