"""Speed and memory benchmarks (see README.md). Importing the package sets OMP_WAIT_POLICY=PASSIVE before any
benchmark imports torch: OpenMP threads that spin while waiting made small ops ~100x slower on this shared 2-core
machine whenever another process held a core. Spawned workers inherit the variable."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
