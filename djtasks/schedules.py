"""Periodic schedule definitions from code (``@periodic``) and settings (``DJTASKS["BEAT_SCHEDULE"]``).

A definition is validated when it is made: a bad cron string, an unknown time zone, a naive ``at`` or
arguments that are not JSON raise at once (``ImproperlyConfigured``/``ValueError``/``TypeError`` in code;
a system check with a hint for settings). The scheduler syncs definitions to ``djtasks_schedule`` rows by name
when it starts; rows made in the admin live only in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import durations, inputs, serialization
from .cron import CATCH_UP_POLICIES, CATCH_UP_SKIP, Timing, require_aware, validate_cron, zone
from .priority import check_priority

SOURCE_CODE = "code"
SOURCE_SETTINGS = "settings"
SOURCE_ADMIN = "admin"
SOURCES = (SOURCE_CODE, SOURCE_SETTINGS, SOURCE_ADMIN)

SETTINGS_KEYS = frozenset(
    {"job", "cron", "every", "at", "tz", "args", "kwargs", "queue", "priority", "catch_up", "expires", "unique"}
)


@dataclass(frozen=True)
class ScheduleDef:
    """One periodic schedule as defined in code or settings (validated; arguments already JSON text)."""

    name: str
    job: str
    cron: str | None = None
    every: float | None = None  # seconds
    at: datetime | None = None
    tz: str | None = None  # None: settings.TIME_ZONE, resolved when synced
    args: str = "[]"
    kwargs: str = "{}"
    queue: str | None = None
    priority: int | None = None
    catch_up: str = CATCH_UP_SKIP
    expires: float | None = None  # seconds
    unique: bool = False
    source: str = SOURCE_CODE
    origin: Any = field(default=None, compare=False)  # the Job (code) for system check messages

    def timing(self, default_tz: str) -> Timing:
        return Timing.make(cron=self.cron, every=self.every, at=self.at, tz=self.tz or default_tz)


def _seconds(value: Any, what: str) -> float:
    try:
        return durations.seconds(value, what)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def build(
    name: str,
    job: str,
    *,
    cron: str | None = None,
    every: float | timedelta | None = None,
    at: datetime | None = None,
    tz: str | None = None,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    catch_up: str = CATCH_UP_SKIP,
    expires: float | timedelta | None = None,
    unique: bool = False,
    source: str = SOURCE_CODE,
    origin: Any = None,
    max_args_bytes: int | None = None,
) -> ScheduleDef:
    """Validate one definition; ``ValueError``/``TypeError`` say what is wrong (without naming the schedule).
    The arguments go through the job encoder (``SerializationError``, a ``TypeError``), limited to
    ``max_args_bytes`` when given."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"the schedule name must be a non-empty string of at most 200 characters, got {name!r:.80}")
    serialization.check_text(name, "the schedule name")
    if not isinstance(job, str) or not job:
        raise ValueError(f"job must be a registered job name (a dotted string), got {job!r}")
    inputs.check_name("schedule", "job", job, inputs.NAME_MAX_CHARS)
    given = [key for key, value in (("cron", cron), ("every", every), ("at", at)) if value is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of cron=, every= or at=" + (f" (got {', '.join(given)})" if given else " (got none)")
        )
    if cron is not None:
        cron = validate_cron(cron)
    every_s = None
    if every is not None:
        every_s = _seconds(every, "every")
        Timing.make(every=every_s)  # range check
    if at is not None:
        at = require_aware(at, "at")
    if tz is not None:
        zone(tz)
    if args is not None and (isinstance(args, (str, bytes, dict)) or not isinstance(args, Iterable)):
        raise TypeError(f"args must be a list or tuple, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    args_json, kwargs_json = serialization.dumps_args(tuple(args or ()), kwargs or {}, max_bytes=max_args_bytes)
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ValueError(f"queue must be a non-empty string, got {queue!r}")
    if queue is not None:
        inputs.check_name("schedule", "queue", queue, inputs.QUEUE_MAX_CHARS)
    if priority is not None:
        check_priority("schedule", priority)
    if catch_up not in CATCH_UP_POLICIES:
        raise ValueError(f"catch_up must be one of {', '.join(map(repr, CATCH_UP_POLICIES))}, got {catch_up!r}")
    expires_s = None
    if expires is not None:
        expires_s = _seconds(expires, "expires")
        if expires_s <= 0:
            raise ValueError(f"expires must be positive, got {expires_s:g} s")
    if not isinstance(unique, bool):
        raise TypeError(f"unique must be True or False, got {unique!r}")
    return ScheduleDef(
        name=name,
        job=job,
        cron=cron,
        every=every_s,
        at=at,
        tz=tz,
        args=args_json,
        kwargs=kwargs_json,
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        expires=expires_s,
        unique=unique,
        source=source,
        origin=origin,
    )


class CodeSchedules:
    """Schedules declared with ``periodic()``, by name."""

    def __init__(self) -> None:
        self._defs: dict[str, ScheduleDef] = {}

    def add(self, definition: ScheduleDef) -> None:
        existing = self._defs.get(definition.name)
        if existing is not None and replace(existing, origin=None) != replace(definition, origin=None):
            raise ImproperlyConfigured(
                f"periodic schedule {definition.name!r} is defined twice with different options; "
                "give one of them another name=..."
            )
        # The same definition again (a module imported twice, e.g. under autoreload) replaces it.
        self._defs[definition.name] = definition

    def remove(self, name: str) -> None:
        self._defs.pop(name, None)

    def all(self) -> list[ScheduleDef]:
        return list(self._defs.values())


code_schedules = CodeSchedules()


def parse_settings(raw: Any, *, max_args_bytes: int | None = None) -> dict[str, ScheduleDef]:
    """Validate ``DJTASKS["BEAT_SCHEDULE"]``; ``ValueError`` names the schedule and the fault (job names are
    checked against the registry by the system checks, once every app is loaded)."""
    if not isinstance(raw, dict):
        raise ValueError(f"must be a dict of schedule name to definition, got {type(raw).__name__}")
    parsed: dict[str, ScheduleDef] = {}
    for schedule_name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"schedule {schedule_name!r} must be a dict, got {type(entry).__name__}")
        unknown = set(entry) - SETTINGS_KEYS
        if unknown:
            raise ValueError(
                f"schedule {schedule_name!r} has unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(SETTINGS_KEYS))}"
            )
        if "job" not in entry:
            raise ValueError(f"schedule {schedule_name!r} needs 'job': the dotted name of a registered job")
        options = {k: v for k, v in entry.items() if k != "job"}
        try:
            parsed[schedule_name] = build(
                schedule_name, entry["job"], source=SOURCE_SETTINGS, max_args_bytes=max_args_bytes, **options
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"schedule {schedule_name!r}: {exc}") from None
    return parsed


def defined_schedules(settings_defs: dict[str, ScheduleDef]) -> list[ScheduleDef]:
    """Code and settings definitions merged by name: a settings entry replaces a code one of the same name
    (settings are per deployment)."""
    merged = {d.name: d for d in code_schedules.all()}
    merged.update(settings_defs)
    return list(merged.values())
