"""Peak memory and wall time, measured the same way for every run (training only).

GPU: peak allocated and reserved accelerator memory (torch.cuda statistics, reset at the start).
CPU: peak resident set size of this process; on Linux the peak is reset at the start by writing 5 to
/proc/self/clear_refs, so it covers training only; elsewhere it is the process lifetime peak.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

PROC_STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


class Meter:
    def __init__(self, device: torch.device):
        self.device = device
        self.samples = 0
        self.rss_scope = "training"

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __enter__(self) -> Meter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            CLEAR_REFS.write_text("5")
        except OSError:
            self.rss_scope = "process"
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.wall = time.perf_counter() - self.start

    def usage(self) -> dict:
        """What train_stats.json reports: wall time, throughput, peak memory (MB) and the RSS peak's scope."""
        mb = 1024**2
        usage = {
            "device": str(self.device),
            "wall_s": round(self.wall, 3),
            "samples": self.samples,
            "samples_per_s": round(self.samples / self.wall, 3) if self.wall > 0 else 0.0,
            "peak_rss_mb": round(peak_rss_bytes() / mb, 1),
            "peak_allocated_mb": None,
            "peak_reserved_mb": None,
            "rss_scope": self.rss_scope,
        }
        if self.device.type == "cuda":
            usage["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.device) / mb, 1)
            usage["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved(self.device) / mb, 1)
        return usage


def peak_rss_bytes() -> int:
    """VmHWM from /proc (resettable), else getrusage's lifetime maximum."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
