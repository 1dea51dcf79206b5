"""System checks: a bad ``DJTASKS`` setting or database is reported by ``manage.py check`` with a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from .conf import SettingError, parse
from .registry import registry


@register("djtasks")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        conf = parse(getattr(settings, "DJTASKS", None))
    except SettingError as exc:
        return [Error(str(exc), hint=exc.hint or "see the DJTASKS settings table in the README", id="djtasks.E001")]
    errors = []
    databases = settings.DATABASES
    if conf.DATABASE not in databases:
        errors.append(
            Error(
                f"DJTASKS['DATABASE'] is {conf.DATABASE!r}, which is not in DATABASES",
                hint=f"use one of: {', '.join(databases)}",
                id="djtasks.E002",
            )
        )
    elif databases[conf.DATABASE].get("ENGINE") != "django.db.backends.postgresql":
        errors.append(
            Error(
                f"djtasks needs PostgreSQL, but database {conf.DATABASE!r} uses {databases[conf.DATABASE].get('ENGINE')}",
                hint="point DJTASKS['DATABASE'] at a django.db.backends.postgresql database",
                id="djtasks.E003",
            )
        )
    for job in registry.all():
        if job.queue is not None and job.queue not in conf.QUEUES:
            errors.append(
                Error(
                    f"job {job.name!r} uses queue {job.queue!r}, which is not in DJTASKS['QUEUES']",
                    hint=f"add {job.queue!r} to DJTASKS['QUEUES'] or use one of: {', '.join(conf.QUEUES)}",
                    obj=job.func,
                    id="djtasks.E004",
                )
            )
    return errors
