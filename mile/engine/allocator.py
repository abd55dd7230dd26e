"""Memory-allocator settings for training and evaluation loops on a CPU.

A training step allocates and frees the same large activation buffers every time. glibc's malloc serves blocks
above its (dynamic, at most 32 MiB) mmap threshold with fresh mappings and trims freed memory at the top of the
heap back to the system, so every step pays page faults and the kernel's zeroing of the same pages again. Keeping
that memory instead (mmap threshold fixed at 32 MiB, trim threshold 2 GiB, top pad 1 GiB) made a mile-small
F-T-T step (224 px, batch 16, bf16, 1 thread) 1.27x faster and a T-T-T step 1.05x faster, with the same peak RSS
(benchmarks/README.md, section 8). Preloading tcmalloc instead does as well or better (`LD_PRELOAD`, see there).
Set MILE_MALLOC=default to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (malloc.h) and the values we set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 2**30}
_applied: str | None = None


def tune_allocator() -> str:
    """Apply the settings once per process (glibc only); returns a description of the allocator in use."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> str:
    preloaded = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if name in preloaded:
            return f"{name} (LD_PRELOAD)"
    if os.environ.get("MILE_MALLOC", "tuned") == "default":
        return "glibc defaults (MILE_MALLOC=default)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return "the platform's allocator (not glibc)"
    if not all(libc.mallopt(option, value) == 1 for option, value in SETTINGS.items()):
        return f"glibc {version} defaults (mallopt refused the settings)"
    return f"glibc {version}, freed memory kept for reuse (mmap threshold 32 MiB, trim threshold 2 GiB)"
