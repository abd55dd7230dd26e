"""The memory settings take effect (an 8 MiB block comes from the heap, not from a fresh mapping; oneDNN's
kernel cache is capped), can be turned off or overridden, and every run records them."""

import subprocess
import sys

import pytest

# Allocates 8 MiB after tune_memory() and prints how many new mmapped blocks that took (glibc's mallinfo2).
PROBE = """
import ctypes
from mile.engine.memory import tune_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
import os
print(tune_memory()["malloc"])
print(os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"])
before = libc.mallinfo2().hblks
libc.malloc(8 * 2**20)
print(libc.mallinfo2().hblks - before)
"""


def _probe(env_extra: dict) -> tuple[str, int, str]:
    import os

    unset = ("LD_PRELOAD", "MILE_MALLOC", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    env = {k: v for k, v in os.environ.items() if k not in unset} | env_extra
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    description, capacity, mapped = out.stdout.strip().splitlines()[-3:]
    return description, int(mapped), capacity


def test_large_blocks_come_from_the_heap_once_tuned():
    description, mapped, capacity = _probe({})
    assert capacity == "16"  # oneDNN keeps 16 compiled kernels, not 1024
    if not description.startswith("glibc"):
        pytest.fail(f"this test needs glibc (Linux); the allocator here is {description}")
    assert "freed memory kept for reuse" in description
    assert mapped == 0  # glibc's default threshold (128 KiB at start) would mmap an 8 MiB block


def test_mile_malloc_default_leaves_glibc_alone_and_the_environment_wins():
    description, mapped, capacity = _probe(
        {"MILE_MALLOC": "default", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}
    )
    assert description == "glibc defaults (MILE_MALLOC=default)" and mapped == 1 and capacity == "64"


def test_a_run_records_its_memory_settings(tiny_config, tmp_path):
    from mile.engine.rundir import RunDir
    from mile.engine.train import train_run

    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1"), run)
    memory = run.read_json("env.json")["memory"]
    assert set(memory) == {"malloc", "onednn_primitive_cache"}
    assert f"malloc: {memory['malloc']}; oneDNN primitive cache: " in (run / "log.txt").read_text()
