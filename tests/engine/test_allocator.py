"""The allocator settings take effect (an 8 MiB block comes from the heap, not from a fresh mapping), can be
turned off, and every run records which allocator it used."""

import subprocess
import sys

import pytest

# Allocates 8 MiB after tune_allocator() and prints how many new mmapped blocks that took (glibc's mallinfo2).
PROBE = """
import ctypes
from mile.engine.allocator import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
print(tune_allocator())
before = libc.mallinfo2().hblks
libc.malloc(8 * 2**20)
print(libc.mallinfo2().hblks - before)
"""


def _probe(env_extra: dict) -> tuple[str, int]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MILE_MALLOC")} | env_extra
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    description, mapped = out.stdout.strip().splitlines()[-2:]
    return description, int(mapped)


def test_large_blocks_come_from_the_heap_once_tuned():
    description, mapped = _probe({})
    if not description.startswith("glibc"):
        pytest.fail(f"this test needs glibc (Linux); the allocator here is {description}")
    assert "freed memory kept for reuse" in description
    assert mapped == 0  # glibc's default threshold (128 KiB at start) would mmap an 8 MiB block


def test_mile_malloc_default_leaves_glibc_alone():
    description, mapped = _probe({"MILE_MALLOC": "default"})
    assert description == "glibc defaults (MILE_MALLOC=default)" and mapped == 1


def test_a_run_records_its_allocator(tiny_config, tmp_path):
    from mile.engine.rundir import RunDir
    from mile.engine.train import train_run

    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1"), run)
    allocator = run.read_json("env.json")["allocator"]
    assert allocator and f"allocator: {allocator}" in (run / "log.txt").read_text()
