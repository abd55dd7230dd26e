"""One lock file per run, so several sweeps (shards, machines) sharing an output folder never run a run twice.

A lock is taken by creating `<output>/.locks/<run>.lock` with O_CREAT | O_EXCL, which only one process can do;
it records host, pid and a token, and its holder touches it every `heartbeat` seconds while the run trains.
A lock is stale, and taken over, when its holder is a process on this host that is gone, an earlier start of the
same SLURM job (requeued after a preemption, on this node or another), or when it has not been touched for
`stale_after` seconds (another host that crashed; the default, 10 minutes, allows for clock skew
between machines). Taking over renames the stale file to a private name first, so of two sweeps that both find
it stale only one succeeds; the other sees the new lock and moves on. A lock can also be removed by hand when
no sweep is running.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

STALE_AFTER_S = 600.0
HEARTBEAT_S = 30.0


class RunLock:
    def __init__(self, path: str | Path, stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S):
        self.path = Path(path)
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = read_lock(self.path)
                if info is not None:  # None: it vanished meanwhile, so try again
                    if not is_stale(info, self.stale_after):
                        return False
                    self._take_over(info)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self._info(), handle)
            self.held = True
            self._start_heartbeat()
            return True
        return False

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.held and (read_lock(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def _info(self) -> dict[str, Any]:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "time": time.time()}
        return info | ({"job": scheduler_job()} if scheduler_job() else {})

    def _take_over(self, stale: dict[str, Any]) -> None:
        """Move the stale lock out of the way; if what was moved turns out to be a fresh lock, put it back."""
        private = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, private)
        except FileNotFoundError:
            return  # someone else took it over first
        moved = read_lock(private) or {}
        if moved.get("token") != stale.get("token"):
            with contextlib.suppress(FileExistsError):
                os.link(private, self.path)  # restore the live lock (unless yet another one exists)
        private.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                if (read_lock(self.path) or {}).get("token") == self.token:
                    with contextlib.suppress(OSError):
                        os.utime(self.path)

        self._thread = threading.Thread(target=beat, name=f"lock-heartbeat {self.path.name}", daemon=True)
        self._thread.start()


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's record plus its age in seconds; None when there is no lock file."""
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:  # being written right now, or garbage
        info = {}
    info = info if isinstance(info, dict) else {}
    info["age_s"] = max(0.0, time.time() - mtime)
    return info


def scheduler_job() -> str | None:
    """The SLURM job (an array task has its own) this process belongs to; a requeued job keeps its id."""
    return os.environ.get("SLURM_JOB_ID")


def is_stale(info: dict[str, Any], stale_after: float = STALE_AFTER_S) -> bool:
    """Stale: its holder is a process of this host that is gone, an earlier start of this same SLURM job (requeued,
    perhaps on another node), or nobody has touched it for `stale_after` s."""
    me = (socket.gethostname(), os.getpid())
    if info.get("job") and info["job"] == scheduler_job() and (info.get("host"), info.get("pid")) != me:
        return True
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return True
    return info.get("age_s", 0.0) > stale_after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "unknown holder"
    return f"{info.get('host', '?')} pid {info.get('pid', '?')}, touched {info.get('age_s', 0):.0f} s ago"
