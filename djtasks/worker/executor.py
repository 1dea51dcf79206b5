"""Runs one claimed job in this thread and returns its outcome for the completer.

Nothing raised by a job escapes this module: success, failure, retry, an unknown name, undecodable
arguments or an unserializable result each become an outcome (``outcomes``), so the worker never dies on a
bad job. An ``async def`` job met here runs on an event loop of its own (``async_executor``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from uuid import UUID

from django import db
from django.utils import timezone

from .. import tracing
from ..exceptions import SoftTimeLimitExceeded
from ..rows import ClaimedJob, Outcome, error_entry
from .outcomes import (  # re-exported: the worker's modules and the tests import them from here
    CANCELLED_WHILE_RUNNING,
    JobRuntime,
    Prepared,
    cancelled_outcome,
    conclude,
    error_outcome,
    failure_outcome,
    flush_progress,
    lookup,
    prepare,
    report,
    report_rescued,
    success_outcome,
    time_limits,
)

__all__ = [
    "CANCELLED_WHILE_RUNNING",
    "IDLE_RECHECK_S",
    "JobRuntime",
    "Prepared",
    "cancelled_outcome",
    "conclude",
    "error_entry",
    "error_outcome",
    "execute",
    "failure_outcome",
    "flush_progress",
    "lookup",
    "prepare",
    "report",
    "report_rescued",
    "success_outcome",
    "time_limits",
]

# After each job its thread's Django connections are checked (as Django does at the end of a request);
# before a job only if the thread sat idle longer than this (as at the start of a request), since a check
# made a moment ago by the previous job still holds.
IDLE_RECHECK_S = 1.0
_thread_state = threading.local()


def _opened_no_connection() -> bool:
    """True if this thread has certainly never opened a Django connection. Django keeps a thread's connections
    in an asgiref ``Local`` whose storage, in a thread without an event loop, is a ``threading.local``: empty
    until the first connection. Looking there costs 0.1 us; ``connections.all(initialized_only=True)`` asks
    asyncio for a running loop per alias (a raised RuntimeError each), 2.7 us a job that never used the
    database. Anything else (another asgiref, an event loop) answers False: the full check runs."""
    storage = getattr(getattr(db.connections, "_connections", None), "_storage", None)
    return type(storage) is threading.local and not vars(storage)


def _after_job() -> None:
    """As Django does after a request (``reset_queries`` and ``close_old_connections``, in one pass over the
    connections this thread opened): a job must not leak a broken or expired connection, nor (with DEBUG) an
    ever-growing query log, into the next job on this thread."""
    if _opened_no_connection():
        return
    for conn in db.connections.all(initialized_only=True):
        conn.queries_log.clear()
        conn.close_if_unusable_or_obsolete()


def execute(
    row: ClaimedJob,
    runtime: JobRuntime | None = None,
    worker_id: UUID | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    manage_connections: bool = True,
) -> Outcome:
    """Run the claimed job ``row`` in this thread and return its outcome.

    ``runtime.running(...)`` wraps exactly the call of the job's function (so a soft time limit can only
    interrupt the job's own code). An ``async def`` job met here (no event loop in this process, or the first
    job of a task resolved on demand) runs to completion on a loop of its own. ``clock`` (default
    ``timezone.now``, looked up per call so a patched one applies) dates the outcome: a retry is due
    ``clock() + delay``; ``djtasks.testing`` passes its own. ``manage_connections=False`` leaves this thread's
    Django connections alone (``djtasks.testing`` runs jobs inside the test's transaction, which closing them
    would break).
    """
    began = (clock or timezone.now)()  # a worker process overrides it with the start its ledger recorded
    if tracing.TRACER is None:
        outcome = _execute(row, runtime, worker_id, clock, manage_connections)
    else:
        outcome = tracing.traced(row, lambda: _execute(row, runtime, worker_id, clock, manage_connections))
    if outcome.get("started_at") is None:
        outcome["started_at"] = began
    return outcome


def _execute(
    row: ClaimedJob,
    runtime: JobRuntime | None,
    worker_id: UUID | None,
    clock: Callable[[], datetime] | None,
    manage_connections: bool,
) -> Outcome:
    if worker_id is None:
        worker_id = getattr(runtime, "id", None)
    prepared = prepare(row, worker_id, clock)
    if not isinstance(prepared, Prepared):
        return prepared
    job, ctx = prepared.job, prepared.ctx
    if job.is_async:
        from .async_executor import run_coroutine_here

        return run_coroutine_here(row, prepared, runtime)
    hard, soft = time_limits(row, job)
    wrapper = runtime.running(row, time_limit=hard, soft_time_limit=soft) if runtime is not None else nullcontext()
    if manage_connections and time.monotonic() - getattr(_thread_state, "last_job_ended", 0.0) > IDLE_RECHECK_S:
        db.close_old_connections()  # a connection may have gone stale while this thread was idle
    try:
        with wrapper:
            value = (
                job.func(ctx, *prepared.args, **prepared.kwargs)
                if ctx is not None
                else job.func(*prepared.args, **prepared.kwargs)
            )
        outcome = success_outcome(row, prepared, value, clock)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a job must not stop the worker either
        prepared.raised = exc
        outcome = error_outcome(row, job, exc, clock)
        if isinstance(exc, SoftTimeLimitExceeded) and manage_connections:
            # It may have interrupted a database call half-way: do not reuse this thread's connections.
            db.connections.close_all()
    finally:
        flush_progress(ctx)
        if manage_connections:
            _after_job()
        _thread_state.last_job_ended = time.monotonic()
    return conclude(row, prepared, outcome)
