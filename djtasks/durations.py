"""Durations as users write them, parsed in one place: seconds (an int or a finite float) or a ``timedelta``.

Settings, job options, call options (``countdown``, ``expires``, time limits) and schedules (``every``,
``expires``) all read durations through ``seconds()``; each then checks the range it needs and raises its own
kind of error (``conf.SettingError``, ``ImproperlyConfigured``, ``ValueError``).
"""

from __future__ import annotations

import math
from datetime import timedelta


def seconds(value: object, what: str) -> float:
    """``value`` in seconds; ``TypeError`` naming ``what`` for anything but an int, a finite float or a
    ``timedelta`` (``True`` is not a number of seconds)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise TypeError(f"{what} must be a number of seconds (int or float) or a timedelta, got {value!r}")
