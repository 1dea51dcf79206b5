"""Checks of what a caller passes to enqueue besides the arguments (those are ``serialization``'s): names,
times and options. Pure functions; the current time is a parameter.

Each refuses, before any SQL is sent, a value the database would refuse or could not give back: a failed
statement would abort the caller's transaction, and a row the worker cannot read would fail far from the
call that made it. ``TypeError`` for a value of the wrong type, ``ValueError`` for a bad value; the message
names the call (``where``) and the option.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from . import durations
from .serialization import check_text

NAME_MAX_CHARS = 255  # djtasks_job.name
QUEUE_MAX_CHARS = 100  # djtasks_job.queue
UNIQUE_KEY_MAX_CHARS = 500  # indexed: at most 2,000 bytes in UTF-8, within a btree entry's 2,704
APPLY_ASYNC_OPTIONS = (
    "countdown",
    "eta",
    "expires",
    "queue",
    "priority",
    "job_id",
    "time_limit",
    "soft_time_limit",
    "unique_key",
)
INT_COLUMN_MAX = 2**31 - 1  # max_attempts and attempt are PostgreSQL integers
# Far enough from the end of Python's datetime (9999-12-31) that run_at or expires_at read back in any time
# zone is still a datetime; timestamptz itself goes to 294276 AD, which Python cannot hold.
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def check_name(where: str, option: str, value: Any, max_chars: int) -> str:
    """A name stored in a text column: a string without NUL or lone surrogates, at most ``max_chars``."""
    try:
        return check_text(value, f"{where}: {option}", max_chars=max_chars)
    except TypeError:
        raise TypeError(f"{where}: {option} must be a string, got {value!r:.80}") from None


def check_datetime(where: str, value: datetime) -> datetime:
    """An aware datetime before ``LATEST``, returned in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{where} is a naive datetime ({value.isoformat()}); pass an aware one, "
            "e.g. django.utils.timezone.make_aware(value) or timezone.now() + timedelta(...)"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at UTC+5: before the first instant Python can hold
        raise ValueError(f"{where} ({value.isoformat()}) is outside the range of datetimes djtasks stores") from None
    if utc >= LATEST:
        raise ValueError(f"{where} ({value.isoformat()}) is too far ahead: it must be before {LATEST.date()}")
    return utc


def _seconds_ahead(where: str, option: str, value: Any, now: datetime) -> datetime:
    """``now`` plus ``value`` seconds (a number or a timedelta), refusing what is not finite or too far."""
    try:
        value = durations.seconds(value, f"{where}: {option}")
    except TypeError:
        raise TypeError(
            f"{where}: {option} must be a number of seconds (finite) or a timedelta, got {value!r:.80}"
        ) from None
    if value > (LATEST - now).total_seconds():
        raise ValueError(f"{where}: {option} of {value:g} s is too far ahead: the time must be before {LATEST.date()}")
    return now + timedelta(seconds=value)


def run_at(where: str, now: datetime, *, countdown: Any = None, eta: Any = None) -> datetime:
    """When the job is first due: ``now``, ``countdown`` seconds (or a timedelta) after it, or at ``eta``
    (an aware datetime; one in the past means now)."""
    if countdown is not None and eta is not None:
        raise ValueError(f"{where}: pass countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, (int, float)) and not isinstance(countdown, bool) and countdown < 0:
            raise ValueError(f"{where}: countdown must not be negative, got {countdown}")
        if isinstance(countdown, timedelta) and countdown < timedelta(0):
            raise ValueError(f"{where}: countdown must not be negative, got {countdown}")
        return _seconds_ahead(where, "countdown", countdown, now)
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TypeError(f"{where}: eta must be a datetime, got {type(eta).__name__}")
        return max(now, check_datetime(f"{where}: eta", eta))
    return now


def expires_at(where: str, now: datetime, run_at: datetime, expires: Any) -> datetime | None:
    """When a job not started yet is cancelled instead: ``expires`` seconds or a timedelta after ``now``,
    or an aware datetime; it must come after ``run_at``."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        at = check_datetime(f"{where}: expires", expires)
    elif isinstance(expires, (int, float, timedelta)) and not isinstance(expires, bool):
        at = _seconds_ahead(where, "expires", expires, now)
    else:
        raise TypeError(f"{where}: expires must be seconds, a timedelta or an aware datetime, got {expires!r:.80}")
    if at <= run_at:
        raise ValueError(f"{where}: expires ({at.isoformat()}) is not after the run time ({run_at.isoformat()})")
    return at


def check_unique_key(where: str, value: Any) -> str:
    """A ``unique_key``: a non-empty string without NUL or lone surrogates, at most ``UNIQUE_KEY_MAX_CHARS``
    (its index entry must fit in a btree page)."""
    key = check_name(where, "unique_key", value, max_chars=UNIQUE_KEY_MAX_CHARS)
    if not key:
        raise ValueError(f"{where}: unique_key must not be empty")
    return key
