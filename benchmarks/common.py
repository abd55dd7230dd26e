"""Measuring helpers shared by the benchmarks: CPU peak memory, bytes saved for backward, robust timing
summaries, interleaved timing, the run's header (machine, threads, load) and Markdown tables. Linux only for the
/proc-based memory figures. Import through the `benchmarks` package, which sets OMP_WAIT_POLICY=PASSIVE before
torch loads."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

MB = 1024 * 1024
GB = 1024 * MB
T = TypeVar("T")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not found in {_STATUS}")


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """High-water mark of the resident set size (VmHWM) since start or the last `reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def trim_malloc() -> None:
    """Hand memory that glibc malloc keeps cached back to the OS, so RSS tracks live memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS may include cached free memory
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> int:
    """Trim malloc caches, reset VmHWM to the current RSS (Linux >= 4.0) and return that RSS."""
    trim_malloc()
    _CLEAR_REFS.write_text("5")
    return rss_bytes()


def shared_dir() -> Path:
    """The shared data and weights: $MILE_SHARED, else ../shared beside the repository."""
    return Path(os.environ.get("MILE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def machine() -> str:
    """CPU model, usable CPUs and torch version, for the record."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{names[0] if names else 'unknown CPU'}, {cpus} CPUs, torch {torch.__version__}"


def load_average() -> str:
    """The 1 / 5 / 15 minute load averages, as printed beside every figure."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def header(module: str, argv: Sequence[str] | None, threads: int, what: str) -> str:
    """Date, command line, machine, threads, OpenMP wait policy and load average at the start of a run."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (spinning)")
    args = " ".join(sys.argv[1:] if argv is None else argv)
    return (
        f"{datetime.datetime.now().isoformat(timespec='minutes')}: python -m {module} {args}\n"
        f"{machine()}; {threads} thread(s), OMP_WAIT_POLICY={policy}; {what}\n"
        f"load average (1 / 5 / 15 min) at start: {load_average()}"
    )


def fused_adamw(params: Iterable[Tensor], lr: float = 1e-5) -> torch.optim.AdamW:
    """The engine's optimizer: AdamW with the fused kernel (80x faster than the per-tensor loop on this CPU)."""
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, fused=True)


def interleave(calls: Mapping[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Run each call once per round, rotating the order every round (ABC, BCA, CAB, ...), so slow spells of
    a shared machine fall on every variant alike. Returns each variant's results in order."""
    names = list(calls)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(calls[name]())
    return out


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms(s: Summary) -> str:
    """Median ± IQR in milliseconds."""
    return f"{s.median * 1e3:.0f} ± {s.iqr * 1e3:.0f}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


@dataclass
class SavedTensorMeter:
    """Bytes of distinct tensor storages that autograd saves for backward inside the `with` block.

    Storages are counted once however many views of them are saved; storages of `exclude` (the parameters,
    which exist anyway) are not counted. `shapes` keeps the first saved view's shape of each storage.
    """

    exclude: Iterable[Tensor] = ()
    sizes: dict[int, int] = field(default_factory=dict)
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._skip = {t.untyped_storage().data_ptr() for t in self.exclude}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in self._skip and ptr not in self.sizes:
            self.sizes[ptr] = storage.nbytes()
            self.shapes[ptr] = tuple(t.shape)
        return t

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    def total(self, where: Callable[[tuple[int, ...]], bool] | None = None) -> int:
        """Bytes saved, optionally only of storages whose first saved view's shape satisfies `where`."""
        return sum(n for p, n in self.sizes.items() if where is None or where(self.shapes[p]))


@dataclass
class Summary:
    """Median and interquartile range of repeated measurements."""

    median: float
    iqr: float
    min: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no measurements to summarise")
        if len(values) == 1:
            return cls(values[0], 0.0, values[0], 1)
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q3 - q1, min(values), len(values))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class Worker:
    """A spawned process running `target(*args, conn)` that answers each message sent to it with
    ("ok", payload) or ("error", traceback); `call` returns the payload or raises."""

    def __init__(self, ctx: Any, name: str, target: Callable[..., None], args: tuple[Any, ...]):
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(*args, child), daemon=True)
        self.process.start()
        child.close()

    def call(self, message: str) -> Any:
        try:
            self.conn.send(message)
            status, payload = self.conn.recv()
        except (EOFError, OSError) as exc:  # killed (out of memory?) or died while bootstrapping
            self.process.join(timeout=5)
            code = self.process.exitcode
            raise RuntimeError(
                f"the {self.name} worker died (exit code {code}) before answering {message!r}"
            ) from exc
        if status != "ok":
            raise RuntimeError(f"the {self.name} worker failed:\n{payload}")
        return payload

    def stop(self) -> None:
        """Send "stop" (the worker should then return) and wait for the process to end."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send("stop")
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()
        self.conn.close()
