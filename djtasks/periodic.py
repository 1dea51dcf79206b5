"""``@periodic``: declare a schedule for a registered job in code.

Definitions (``ScheduleDef``) and their validation live in ``schedules`` (below the settings, which parse
``BEAT_SCHEDULE`` with them); this decorator sits above ``jobs`` and ``registry`` because it accepts a ``Job``
or a registered job name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .cron import CATCH_UP_SKIP
from .jobs import Job
from .registry import registry
from .schedules import SOURCE_CODE, build, code_schedules


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
