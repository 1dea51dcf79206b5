"""System checks: a bad ``DJTASKS`` setting or database is reported by ``manage.py check`` with a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend

from .conf import SettingError, parse
from .registry import registry


@register("djtasks")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        conf = parse(getattr(settings, "DJTASKS", None))
    except SettingError as exc:
        return [Error(str(exc), hint=exc.hint or "see the DJTASKS settings table in the README", id=exc.check_id)]
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
    else:
        errors.extend(check_vendor(conf.DATABASE))
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
    errors.extend(check_schedules(conf))
    return errors


def check_vendor(alias: str) -> list[Error]:
    """The djtasks database must be PostgreSQL (``djtasks.E003``), judged by the backend's ``vendor`` rather than
    its ENGINE path, so PostGIS and backends that wrap Django's PostgreSQL one pass. The backend's class is read from
    its module (as ``settings.DATABASES`` says now): no connection is opened."""
    engine = settings.DATABASES[alias].get("ENGINE") or "django.db.backends.dummy"
    try:
        vendor = load_backend(engine).DatabaseWrapper.vendor
    except ImproperlyConfigured as exc:  # the backend module cannot be loaded (a typo, a missing library)
        return [
            Error(
                f"database {alias!r} (ENGINE {engine!r}) cannot be loaded: {exc}",
                hint="djtasks needs a PostgreSQL backend, such as django.db.backends.postgresql",
                id="djtasks.E003",
            )
        ]
    if vendor != "postgresql":
        return [
            Error(
                f"djtasks needs PostgreSQL, but database {alias!r} uses {engine} (vendor {vendor!r})",
                hint="point DJTASKS['DATABASE'] at a PostgreSQL database (django.db.backends.postgresql, PostGIS, "
                "or a backend built on them)",
                id="djtasks.E003",
            )
        ]
    return []


def check_schedules(conf: Any) -> list[Error]:
    """Periodic schedules must name a registered job (``djtasks.E006``) and a known queue (``djtasks.E007``)."""
    from .schedules import code_schedules

    errors = []
    for definition in [*code_schedules.all(), *conf.BEAT_SCHEDULE.values()]:
        where = (
            f"DJTASKS['BEAT_SCHEDULE'][{definition.name!r}]"
            if definition.source == "settings"
            else f"periodic schedule {definition.name!r}"
        )
        if definition.job not in registry:
            known = sorted(job.name for job in registry.all())
            close = registry.similar(definition.job)
            errors.append(
                Error(
                    f"{where} names job {definition.job!r}, which no @job registered",
                    hint=(f"did you mean {' or '.join(close)}? " if close else "")
                    + "use the job's full dotted name (module.function, or its name=); registered jobs: "
                    + (", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none"),
                    obj=definition.origin,
                    id="djtasks.E006",
                )
            )
            continue
        queue = definition.queue or registry.get(definition.job).queue
        if queue is not None and queue not in conf.QUEUES:
            errors.append(
                Error(
                    f"{where} sends its jobs to queue {queue!r}, which is not in DJTASKS['QUEUES']",
                    hint=f"add {queue!r} to DJTASKS['QUEUES'] or use one of: {', '.join(conf.QUEUES)}",
                    obj=definition.origin,
                    id="djtasks.E007",
                )
            )
    return errors


@register("djtasks")
def check_tasks_backend(app_configs: Any = None, **kwargs: Any) -> list[checks.Warning]:
    """``TASKS`` naming djtasks' backend on a Django without ``django.tasks`` (it would be silently ignored)."""
    import django

    if django.VERSION >= (6, 0):
        return []  # Django checks TASKS itself, and calls DatabaseBackend.check()
    tasks = getattr(settings, "TASKS", None) or {}
    return [
        checks.Warning(
            f"TASKS[{alias!r}] names djtasks.backend.DatabaseBackend, but Django {django.get_version()} has no "
            "django.tasks, so the setting is ignored",
            hint="upgrade to Django 6 to use @task with djtasks, or use djtasks' own @job API",
            id="djtasks.W001",
        )
        for alias, params in tasks.items()
        if isinstance(params, dict) and str(params.get("BACKEND", "")).startswith("djtasks.backend")
    ]
