"""``djtasks.enqueue()``: enqueue a job by its registered name, without importing it.

For code that cannot or should not import the job: another service sharing the database, a plugin, a
management shell. If the name is registered in this process, the job's own options apply exactly as with
``apply_async``; if not, the row gets the defaults (priority 0, ``max_attempts`` 1 unless given, the queue
from ``ROUTES`` or ``DEFAULT_QUEUE``), and the worker that claims it looks the name up: a name no worker has
registered fails that job with ``NotRegistered`` (it is never imported from the row's text).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import signals
from .cursors import guarded
from .jobs import Job, _django_store
from .registry import registry
from .results import JobResult

NAME_MAX_CHARS = 255  # djtasks_job.name


def _not_here(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a job enqueued by name runs in the worker that registered it, not here")


def _job_for(name: Any) -> tuple[Job, Any]:
    """The registered ``Job`` (and it as signal sender), or an unregistered stand-in carrying the defaults
    (and the name as sender)."""
    if not isinstance(name, str):
        raise TypeError(f"enqueue: the job name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("enqueue: the job name must not be empty")
    if "\x00" in name:
        raise ValueError(f"enqueue: the job name {name!r} contains a NUL character, which PostgreSQL cannot store")
    if len(name) > NAME_MAX_CHARS:
        raise ValueError(
            f"enqueue: the job name {name[:40]!r}... is {len(name)} characters long; at most {NAME_MAX_CHARS}"
        )
    if name in registry:
        job = registry.get(name)
        return job, job
    return Job(_not_here, name=name), name  # built, never registered: it only validates and fills the row


def enqueue(
    name: str,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    expires: float | timedelta | datetime | None = None,
    job_id: uuid.UUID | str | None = None,
    max_attempts: int | None = None,
    time_limit: float | timedelta | None = None,
    soft_time_limit: float | timedelta | None = None,
) -> JobResult:
    """Enqueue the job registered as ``name`` (its full dotted name, or its ``name=``) with these arguments.

    The options are those of ``apply_async`` and are checked the same way (``ValueError``/``TypeError``;
    arguments that are not JSON raise ``SerializationError``); the queue follows the same precedence: ``queue=``,
    then ``DJTASKS["ROUTES"]``, then the job's ``@job(queue=)`` when it is registered here, then
    ``DEFAULT_QUEUE``. ``max_attempts`` overrides the job's (default: the registered job's, or 1).
    A name with a NUL character or longer than 255 characters is refused before anything is written.
    Like ``delay()``, it joins the caller's transaction. ``job_enqueued`` is sent with the ``Job`` as sender
    when the name is registered here, else with the name.
    """
    job, sender = _job_for(name)
    now = timezone.now()
    row = job._row(
        args,
        kwargs,
        now,
        countdown=countdown,
        eta=eta,
        expires=expires,
        queue=queue,
        priority=priority,
        job_id=job_id,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
    )
    if max_attempts is not None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"enqueue({name!r}): max_attempts must be an int, got {max_attempts!r}")
        if max_attempts < 1:
            raise ValueError(f"enqueue({name!r}): max_attempts must be at least 1, got {max_attempts}")
        row["max_attempts"] = max_attempts
    if job_id is not None:  # a caller-chosen id may exist already: a savepoint keeps the caller's transaction
        with guarded(f"enqueue({name!r})"):
            _django_store.job_insert(now=now, **row)
    else:
        _django_store.job_insert(now=now, **row)
    signals.job_enqueued.send(sender=sender, job_id=row["id"], queue=row["queue"], run_at=row["run_at"])
    return JobResult(row["id"], name=name)
