"""The one error type of the data layer.

Everything that goes wrong while reading a user's files (bad JSON shape, a path that escapes the dataset root, a
corrupt image, too many bad records) is raised as `DataError`, so callers (CLI, engine) can catch one type and show
its message, which always names the file and, where there is one, the record and what was expected.
It subclasses `ValueError` because the cause is always bad input, never a bug in our code.
"""

from __future__ import annotations

from mile.errors import MileError


class DataError(MileError, ValueError):
    """Bad input data: the message names the file, the record (id or index) and what was expected."""


class PathEscapeError(DataError):
    """A record's image path points outside the dataset root (`..`, an absolute path or a symlink)."""


class ImageError(DataError):
    """An image file is missing, unreadable, corrupt, truncated or too large (decompression-bomb guard)."""
