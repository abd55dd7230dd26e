"""The one error type of tuning plans: a mistake the user can fix in the plan (or the notation) they wrote."""

from __future__ import annotations

from mile.errors import MileError


class PlanError(MileError, ValueError):
    """A tuning plan that cannot be applied: the message names the plan key, the bad value and what is valid."""
