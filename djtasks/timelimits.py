"""Checking a job's ``time_limit`` and ``soft_time_limit`` (seconds), at decoration and at each call.

The hard limit is enforced by the supervisor, which kills the worker process running an overdue job; the
soft limit raises ``SoftTimeLimitExceeded`` inside the job. A soft limit only makes sense below the hard one.
"""

from __future__ import annotations

from typing import Any

from . import durations


def _seconds(where: str, option: str, value: Any, bad_value: type[Exception]) -> float | None:
    if value is None:
        return None
    value = durations.seconds(value, f"{where}: {option}")
    if value <= 0:
        raise bad_value(f"{where}: {option} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_time_limits(
    where: str,
    time_limit: Any,
    soft_time_limit: Any,
    *,
    bad_value: type[Exception] = ValueError,
) -> tuple[float | None, float | None]:
    """Return ``(time_limit, soft_time_limit)`` as floats (or ``None``), or raise naming ``where`` and the option.

    ``TypeError`` for a value that is not a number; ``bad_value`` (``ImproperlyConfigured`` at decoration,
    ``ValueError`` at a call) for a value that is not positive, or a soft limit not below the hard one.
    """
    hard = _seconds(where, "time_limit", time_limit, bad_value)
    soft = _seconds(where, "soft_time_limit", soft_time_limit, bad_value)
    if hard is not None and soft is not None and soft >= hard:
        raise bad_value(
            f"{where}: soft_time_limit ({soft:g} s) must be less than time_limit ({hard:g} s), so the job gets "
            "the chance to clean up before it is killed"
        )
    return hard, soft
