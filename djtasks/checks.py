"""System checks: a bad ``DJTASKS`` setting or database is reported by ``manage.py check`` with a hint."""

from __future__ import annotations

import fnmatch
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend

from .conf import SettingError, is_glob, parse
from .registry import registry


@register("djtasks")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | CheckWarning]:
    try:
        conf = parse(getattr(settings, "DJTASKS", None))
    except SettingError as exc:
        return [Error(str(exc), hint=exc.hint or "see the DJTASKS settings table in the README", id=exc.check_id)]
    errors: list[Error | CheckWarning] = []
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
    errors.extend(check_routes(conf))
    errors.extend(check_pooling(conf))
    return errors


POOLER_DOCS = 'see "Running behind PgBouncer" in the README'


def _address(alias: str) -> tuple[str, str]:
    """Where an alias connects: HOST and PORT, or libpq's ``host``/``port`` in OPTIONS (as django-environ puts a
    unix socket directory)."""
    params: dict[str, Any] = settings.DATABASES[alias]
    options: dict[str, Any] = params.get("OPTIONS") or {}
    host = params.get("HOST") or options.get("host") or ""
    port = params.get("PORT") or options.get("port") or ""
    return str(host), str(port)


def check_pooling(conf: Any) -> list[Error | CheckWarning]:
    """Settings that cannot work with the pooler ``DJTASKS['POOL_MODE']`` says ``DATABASE`` goes through, and
    a ``LISTEN_DATABASE`` that does not exist (``djtasks.E022``) or looks pooled (``W022``). Reads settings
    only: no connection is opened, so it costs nothing and cannot fail when the database is down. (Workers
    look at the connections themselves when they start; see ``worker/listener.py``.)"""
    found: list[Error | CheckWarning] = []
    listen_alias = conf.LISTEN_DATABASE
    if listen_alias is not None:
        if listen_alias not in settings.DATABASES:
            return [
                Error(
                    f"DJTASKS['LISTEN_DATABASE'] is {listen_alias!r}, which is not in DATABASES",
                    hint=f"add a direct (unpooled) alias to the djtasks database to DATABASES, or use one of: "
                    f"{', '.join(settings.DATABASES)}; without LISTEN_DATABASE workers poll behind a "
                    f"transaction-mode pooler; {POOLER_DOCS}",
                    id="djtasks.E022",
                )
            ]
        found.extend(check_vendor(listen_alias))
        pooled = conf.DATABASE in settings.DATABASES and conf.POOL_MODE is not None
        if pooled and (listen_alias == conf.DATABASE or _address(listen_alias) == _address(conf.DATABASE)):
            found.append(
                CheckWarning(
                    f"DJTASKS['LISTEN_DATABASE'] ({listen_alias!r}) connects where DJTASKS['DATABASE'] "
                    f"({conf.DATABASE!r}) does, which goes through a {conf.POOL_MODE}-mode pooler",
                    hint="LISTEN_DATABASE must reach PostgreSQL directly (its own HOST/PORT), or "
                    "notifications are lost and workers fall back to polling; " + POOLER_DOCS,
                    id="djtasks.W022",
                )
            )
    if conf.POOL_MODE != "transaction":
        return found
    if conf.LISTEN and listen_alias is None:
        found.append(
            CheckWarning(
                "DJTASKS['LISTEN'] is on, but DJTASKS['DATABASE'] goes through a transaction-mode pooler "
                "(POOL_MODE), where LISTEN cannot work: workers will poll every POLL_INTERVAL",
                hint="set DJTASKS['LISTEN_DATABASE'] to a direct (unpooled) alias to keep instant wake-ups, or "
                "LISTEN = False to say polling is meant; " + POOLER_DOCS,
                id="djtasks.W020",
            )
        )
    if conf.PREPARED_STATEMENTS:
        found.append(
            CheckWarning(
                "DJTASKS['PREPARED_STATEMENTS'] is True while DJTASKS['DATABASE'] goes through a transaction-mode "
                "pooler: this needs PgBouncer 1.21 or later with max_prepared_statements set, or statements fail "
                "with 'prepared statement ... does not exist'",
                hint="leave PREPARED_STATEMENTS unset (off behind a transaction-mode pooler) unless the pooler "
                "keeps prepared statements; " + POOLER_DOCS,
                id="djtasks.W021",
            )
        )
    params = settings.DATABASES.get(conf.DATABASE)
    if params is not None and not params.get("DISABLE_SERVER_SIDE_CURSORS"):
        found.append(
            CheckWarning(
                f"DATABASES[{conf.DATABASE!r}] goes through a transaction-mode pooler (DJTASKS['POOL_MODE']) "
                "but does not set DISABLE_SERVER_SIDE_CURSORS",
                hint="set DATABASES[...]['DISABLE_SERVER_SIDE_CURSORS'] = True, as Django's documentation says "
                "for transaction pooling (QuerySet.iterator() cursors would outlive their transaction); " + POOLER_DOCS,
                id="djtasks.W023",
            )
        )
    return found


def check_routes(conf: Any) -> list[CheckWarning]:
    """A ``ROUTES`` entry that matches no registered job is probably a typo (``djtasks.W010``); it is only a
    warning, since ``djtasks.enqueue()`` may send jobs registered only in another service."""
    names = [job.name for job in registry.all()]
    warnings = []
    for pattern in conf.ROUTES:
        if any(fnmatch.fnmatchcase(name, pattern) if is_glob(pattern) else name == pattern for name in names):
            continue
        close = [] if is_glob(pattern) else registry.similar(pattern)
        warnings.append(
            CheckWarning(
                f"DJTASKS['ROUTES'] entry {pattern!r} matches no registered job",
                hint=(f"did you mean {' or '.join(close)}? " if close else "")
                + "keys are full job names (module.function, or the job's name=) or glob patterns such as "
                "'reports.*'; ignore this if the jobs are registered only in another service",
                id="djtasks.W010",
            )
        )
    return warnings


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
        queue = definition.queue or conf.route(definition.job) or registry.get(definition.job).queue
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
