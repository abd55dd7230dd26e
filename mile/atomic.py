"""Atomic file writes: write to a temp file beside the target, then rename over it.

A crash or a kill at any moment leaves either the old complete file or the new complete file, never half of one.
A write that cannot complete (full disk, no permission) removes its temp file, so the space it took is free
again, and raises `WriteError` naming the target.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from mile.errors import MileError


class WriteError(MileError, RuntimeError):
    """A file could not be written (full disk, quota, permissions); the message names the file."""


# What serialisers raise when the OS refuses a write: OSError from Python, RuntimeError from torch.save's C++
# writer, SafetensorError (an Exception subclass) from safetensors' Rust one.
WRITE_FAILURES: tuple[type[BaseException], ...] = (OSError, RuntimeError, SafetensorError)

LOW_SPACE = 1 << 20  # below this much free space a failed write is blamed on a full disk


def write_failure(target: str | Path, exc: BaseException) -> WriteError:
    """A WriteError for `exc` raised while writing `target`, saying how much space its filesystem has left."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:  # torch's and safetensors' messages carry no errno; their first line says enough
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    try:
        free: int | None = shutil.disk_usage(Path(target).parent).free
    except OSError:
        free = None
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        free is not None and free < LOW_SPACE
    )
    where = f"; {free:,} bytes free on its filesystem" if free is not None else ""
    hint = " (the disk is full: free space or choose another run.output_dir)" if full else ""
    return WriteError(f"cannot write {target}: {reason}{where}{hint}")


def atomic_write(target: str | Path, write: Callable[[str], Any]) -> Path:
    """Call `write(tmp_path)` to produce the file, then move it onto `target`; WriteError if that fails."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise write_failure(target, exc) from exc
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except WRITE_FAILURES as exc:
        error = write_failure(target, exc)  # measures the free space before the cleanup
        Path(tmp).unlink(missing_ok=True)
        raise error from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def append_line(target: str | Path, line: str) -> None:
    """Append one line to a log file; WriteError if the disk refuses it."""
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        raise write_failure(target, exc) from exc


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(target: str | Path, data: Any) -> Path:
    return atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
