"""``@periodic``: declare a schedule for a registered job in code.

Definitions (``ScheduleDef``) and their validation live in ``schedules`` (below the settings, which parse
``BEAT_SCHEDULE`` with them); this decorator sits above ``jobs`` and ``registry`` because it accepts a ``Job``
or a registered job name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from . import serialization
from .conf import PRIORITY_MAX, PRIORITY_MIN, djtasks_settings
from .cron import CATCH_UP_SKIP, Timing, validate_cron, zone
from .cursors import django_store
from .jobs import Job
from .registry import registry
from .schedules import SOURCE_ADMIN, SOURCE_CODE, build, code_schedules


def periodic(
    job: Job | str | None = None,
    *,
    cron: str | None = None,
    every: float | timedelta | None = None,
    at: datetime | None = None,
    tz: str | None = None,
    name: str | None = None,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    catch_up: str = CATCH_UP_SKIP,
    expires: float | timedelta | None = None,
    unique: bool = False,
) -> Any:
    """Run a job periodically: ``@periodic(cron="*/5 * * * *", tz="Europe/Paris")`` stacked above ``@job``, or
    ``periodic(some_job, every=timedelta(minutes=5))``.

    Timing, exactly one of: ``cron`` (5 fields, read in ``tz``, default ``settings.TIME_ZONE``), ``every``
    (seconds or a timedelta, at least 1 s; ticks are multiples of it since the Unix epoch) or ``at`` (an aware
    datetime: once). Options: ``name`` (default: the job's name; needed to give one job two schedules),
    ``args``/``kwargs`` for the job, ``queue``/``priority`` (default: the job's), ``catch_up`` (``"skip"``:
    after downtime fire once, then resume; ``"all"``: one job per missed tick), ``expires`` (seconds or timedelta
    after its tick by which the job must have started, or it is cancelled), ``unique`` (no new fire while the
    previous one is queued or running). Returns the job unchanged. Turn a schedule off in the admin (it stays
    off across restarts); a definition deleted from the code has its row disabled. A bad option raises ``ImproperlyConfigured`` naming the schedule.
    """
    options: dict[str, Any] = {  # passed on to schedules.build, which checks each
        "cron": cron,
        "every": every,
        "at": at,
        "tz": tz,
        "args": args,
        "kwargs": kwargs,
        "queue": queue,
        "priority": priority,
        "catch_up": catch_up,
        "expires": expires,
        "unique": unique,
    }

    def register(target: Job | str) -> Job | str:
        if isinstance(target, Job):
            job_name = target.name
        elif isinstance(target, str):
            if target not in registry:
                raise ImproperlyConfigured(
                    f"periodic({target!r}): no job named {target!r} is registered; pass the @job function itself, "
                    "or import its module first"
                )
            job_name = target
        else:
            raise TypeError(
                f"@periodic expects a @job (put @periodic above @job) or a registered job name, got {target!r}"
            )
        schedule_name = name or job_name
        try:
            definition = build(schedule_name, job_name, source=SOURCE_CODE, origin=target, **options)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"periodic schedule {schedule_name!r}: {exc}") from None
        code_schedules.add(definition)
        return target

    if job is not None:
        return register(job)
    return register


def row_errors(
    *,
    job_name: Any,
    cron: Any,
    interval_seconds: Any,
    at: Any,
    timezone: Any,
    args: Any,
    kwargs: Any,
    queue: Any,
    priority: Any,
    expires_seconds: Any,
) -> dict[str, str]:
    """What is wrong with a schedule row's definition, by field (``"__all__"`` for the timing as a whole);
    empty when it can fire. The one validation of rows, whoever writes them: ``Schedule.full_clean()``
    (so ``save()`` and the admin form), and the scheduler for rows written past the model."""
    errors: dict[str, str] = {}
    if not isinstance(job_name, str) or job_name not in registry:
        close = registry.similar(job_name) if isinstance(job_name, str) else []
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        errors["job_name"] = f"No job named {job_name!r} is registered.{hint}"
    if cron:
        try:
            validate_cron(cron)
        except ValueError as exc:
            errors["cron"] = str(exc)
    try:
        zone(timezone)
    except ValueError as exc:
        errors["timezone"] = str(exc)
    given = [value for value in (cron, interval_seconds, at) if value not in (None, "")]
    if len(given) != 1:
        errors["__all__"] = "Give exactly one of: a cron expression, an interval in seconds, or a time (at)."
    elif "cron" not in errors and "timezone" not in errors:
        try:
            Timing.make(cron=cron or None, every=interval_seconds, at=at, tz=timezone)
        except ValueError as exc:
            errors["__all__"] = str(exc)
    if queue and queue not in djtasks_settings.QUEUES:
        errors["queue"] = f"Unknown queue {queue!r}; known: {', '.join(djtasks_settings.QUEUES)}."
    if priority is not None and not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        errors["priority"] = f"Priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {priority}."
    if not isinstance(args, list):
        errors["args"] = f"Positional arguments must be a JSON list, got {type(args).__name__}."
    if not isinstance(kwargs, dict):
        errors["kwargs"] = f"Keyword arguments must be a JSON object, got {type(kwargs).__name__}."
    if expires_seconds is not None and expires_seconds <= 0:
        errors["expires_seconds"] = f"Expires must be a positive number of seconds, got {expires_seconds}."
    return errors


def add_schedule(
    name: str,
    job: Job | str,
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
    enabled: bool = True,
) -> Any:
    """Create the database schedule ``name``, or update it if it exists, and return the ``Schedule`` row:
    for code that makes schedules at run time (a data migration, a view, a tenant's setup), where
    ``@periodic`` (fixed in code) does not fit. Options are those of ``periodic()``.

    Runs in a transaction on ``DJTASKS["DATABASE"]`` (joining the caller's); running schedulers pick the row up
    when it commits. Re-timing an existing schedule moves its next tick to the first one after now; changing
    only its arguments keeps it. A bad option raises ``ValueError``/``TypeError``, an unknown job or queue
    ``django.core.exceptions.ValidationError``; nothing is written then. A schedule defined in code or
    settings cannot be changed here (``ValueError``): its definition is the code's.
    """
    job_name = job.name if isinstance(job, Job) else job
    definition = build(
        name,
        job_name,
        cron=cron,
        every=every,
        at=at,
        tz=tz,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        expires=expires,
        unique=unique,
        source=SOURCE_ADMIN,
    )
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    values = {
        "job_name": definition.job,
        "cron": definition.cron or "",
        "interval_seconds": definition.every,
        "at": definition.at,
        "timezone": zone(definition.tz or settings.TIME_ZONE or "UTC").key,
        "args": serialization.loads(definition.args),
        "kwargs": serialization.loads(definition.kwargs),
        "queue": definition.queue or "",
        "priority": definition.priority,
        "catch_up": definition.catch_up,
        "expires_seconds": definition.expires,
        "unique": definition.unique,
        "enabled": enabled,
    }
    from .models import Schedule

    with transaction.atomic(using=djtasks_settings.DATABASE):
        schedule = Schedule.objects.using(djtasks_settings.DATABASE).select_for_update().filter(name=name).first()
        if schedule is None:
            schedule = Schedule(name=name, source=SOURCE_ADMIN)
        elif schedule.source != SOURCE_ADMIN:
            raise ValueError(f"schedule {name!r} is defined in {schedule.source}; change it there")
        for field_name, value in values.items():
            setattr(schedule, field_name, value)
        schedule.save(using=djtasks_settings.DATABASE)
    return schedule


def _notify(name: str) -> None:
    django_store().schedule_notify(name=name)


def install_schedule_hooks() -> None:
    """Give ``Schedule.full_clean()`` / ``save()`` the validation and the wake-up they need from above the models
    (called by ``AppConfig.ready()``)."""
    from . import models

    models.SCHEDULE_HOOKS["errors"] = row_errors
    models.SCHEDULE_HOOKS["notify"] = _notify
