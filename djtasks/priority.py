"""Job priority: its range and the one check every entry point shares (``@job``, ``apply_async``, schedules)."""

from __future__ import annotations

from typing import Any

PRIORITY_MIN = -100
PRIORITY_MAX = 100


def check_priority(where: str, priority: Any, *, bad_value: type[Exception] = ValueError) -> int:
    """Return ``priority`` if it is an int in ``PRIORITY_MIN..PRIORITY_MAX``.

    A non-int raises ``TypeError``; an int out of range raises ``bad_value`` (``ValueError`` at a call,
    ``ImproperlyConfigured`` when a job is declared), the message starting with ``where``.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"{where}: priority must be an int, got {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise bad_value(f"{where}: priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {priority}")
    return priority
