"""Ids that become folder names on the receiver, so they are checked before anything else."""

from __future__ import annotations

import functools
import re

from .errors import InvalidName

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_name(value: object, field: str = "name") -> str:
    """Return ``value`` if it is a safe id: 1–64 of ``A-Z a-z 0-9 . _ -``, not only dots."""
    if not isinstance(value, str):
        raise InvalidName(field, f"must be a string, not {type(value).__name__}")
    problem = _problem(value)
    if problem is not None:
        raise InvalidName(field, problem)
    return value


@functools.lru_cache(maxsize=1024)
def _problem(value: str) -> str | None:
    """Why ``value`` is no safe id, or None; remembered: every block of a stream names it again."""
    if not NAME_PATTERN.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return f"{shown!r} is not 1-64 characters of A-Z a-z 0-9 . _ -"
    if set(value) == {"."}:
        return f"{value!r} is a path component, not a name"
    return None
