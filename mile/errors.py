"""The root of every error a user can fix: a bad config, data, checkpoint, plan or path, a full disk.

The CLI prints such an error as one line (`error: ...`) and exits with code 2; anything else is a bug and keeps
its traceback. Each layer derives its own errors from `MileError` (ConfigError, DataError, CheckpointError,
PlanError, ...), most also from ValueError, so code that caught ValueError before still does.
"""

from __future__ import annotations


class MileError(Exception):
    """Bad input the user can fix; the message names the file, record or config key and what was expected."""
