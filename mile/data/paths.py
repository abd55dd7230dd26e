"""Resolve a record's image path safely against a dataset root.

Dataset files are user input: a record whose `img_name` is `../../etc/passwd`, an absolute path, or a symlink that
points out of the dataset directory must never make us read (or later show, copy or log) a file the user did not
mean to expose. We resolve the path first (which follows `..` and symlinks, as the OS would when opening it) and
only then check that the result still lies inside the resolved root.
"""

from __future__ import annotations

import os
from pathlib import Path

from mile.data.errors import DataError, PathEscapeError


def resolve_image_path(root: str | os.PathLike[str], relative: str, *, where: str = "") -> Path:
    """Return the absolute, resolved path of `relative` under `root`, refusing anything outside `root`.

    `relative` may be a relative path (the normal case) or an absolute path that already lies inside `root`.
    `where` names the file and record for the error message (e.g. "train.json, record 'qid 12'").
    Raises `PathEscapeError` for `..` escapes, absolute paths outside the root and escaping symlinks; the file
    itself need not exist (missing files are a separate, countable bad-record reason).
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(relative, str) or not relative.strip():
        raise PathEscapeError(f"{prefix}image path must be a non-empty string, got {relative!r}")
    if "\x00" in relative:
        raise PathEscapeError(f"{prefix}image path {relative!r} contains a NUL byte")
    root_resolved = Path(root).resolve()
    candidate = Path(relative)
    joined = candidate if candidate.is_absolute() else root_resolved / candidate
    try:
        resolved = joined.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, over-long names
        raise PathEscapeError(
            f"{prefix}cannot resolve image path {relative!r} under {root_resolved}: {exc}"
        ) from exc
    if not resolved.is_relative_to(root_resolved):
        raise PathEscapeError(
            f"{prefix}image path {relative!r} resolves to {resolved}, outside the dataset root {root_resolved}; "
            "expected a path inside the root (no '..', no absolute path elsewhere, no symlink leading out)"
        )
    return resolved


def existing_dir(root: str | os.PathLike[str], what: str) -> Path:
    """`root` as a resolved Path, or a `DataError` saying which dataset root is missing."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{what} root {str(path)!r} is not a directory (set the dataset root to the folder "
            "that holds the split files)"
        )
    return path.resolve()


def split_file(root: Path, split: str, files: dict[str, str], what: str) -> Path:
    """The file of `split` under `root`; unknown split names and missing files are `DataError`s."""
    if split not in files:
        raise DataError(f"unknown {what} split {split!r}; valid splits: {sorted(files)}")
    path = root / files[split]
    if not path.is_file():
        raise DataError(f"{what} split {split!r}: file {path} does not exist")
    return path
