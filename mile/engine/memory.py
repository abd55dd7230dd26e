"""Memory settings for long training and evaluation runs on a CPU: glibc's malloc and oneDNN's kernel cache.

- **malloc.** A training step allocates and frees the same large activation buffers every time. glibc serves
  blocks above its (dynamic, at most 32 MiB) mmap threshold with fresh mappings and trims freed memory at the top
  of the heap back to the system, so every step pays page faults and the kernel's zeroing of the same pages
  again. Keeping that memory instead (mmap threshold fixed at 32 MiB, trim threshold 2 GiB, top pad 1 GiB) made
  mile-small training steps 1.05-1.13x and evaluation 1.1-1.2x faster, with the same peak RSS
  (benchmarks/README.md, section 8). Preloading tcmalloc does a little better still (`LD_PRELOAD`, see there).
  MILE_MALLOC=default leaves glibc's defaults alone.
- **oneDNN's primitive cache.** bf16 matrix multiplies run through oneDNN, which compiles and keeps a kernel per
  GEMM shape, 1024 by default; question lengths vary from batch to batch, so over an epoch it filled with kernels:
  a 3-epoch bf16 F-T-T run on VQA-RAD peaked at 2.54 GB RSS with the default and 2.14 GB with a capacity of 16,
  at the same speed (32.4 vs 31.9 samples/s; a T-T-T step 2.10 vs 2.08 s). An ONEDNN_PRIMITIVE_CACHE_CAPACITY
  already in the environment wins.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (malloc.h) and the values we set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 2**30}
ONEDNN_CACHE_CAPACITY = 16
_applied: dict[str, str] | None = None


def tune_memory() -> dict[str, str]:
    """Apply the settings once per process (before the first bf16 GEMM, so that oneDNN reads its capacity);
    returns what is in use: {"malloc": ..., "onednn_primitive_cache": ...}."""
    global _applied
    if _applied is None:
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))
        cache = f"{os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY']} kernels (ONEDNN_PRIMITIVE_CACHE_CAPACITY)"
        _applied = {"malloc": _tune_malloc(), "onednn_primitive_cache": cache}
    return _applied


def _tune_malloc() -> str:
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
