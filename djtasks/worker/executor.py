"""Runs one claimed job and turns what happened into an outcome for the completer.

Nothing raised by a job escapes this module: success, failure, retry, an unknown name, undecodable
arguments or an unserializable result each become an outcome, so the worker never dies on a bad job.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from django import db
from django.utils import timezone

from .. import serialization, signals
from ..exceptions import JobCancelled, NotRegistered, Retry, SoftTimeLimitExceeded
from ..jobs import Job, JobContext
from ..registry import registry
from ..rows import Outcome, error_entry
from ..status import JobStatus

logger = logging.getLogger("djtasks.worker")

# After each job its thread's Django connections are checked (as Django does at the end of a request);
# before a job only if the thread sat idle longer than this (as at the start of a request), since a check
# made a moment ago by the previous job still holds.
IDLE_RECHECK_S = 1.0
_thread_state = threading.local()


CANCELLED_WHILE_RUNNING = "cancelled while running: the job stopped after ctx.is_cancelled() said so"


class JobRuntime(Protocol):
    """What the worker process wraps around each job's function call: reporting to the supervisor and
    arming the soft time limit."""

    def running(
        self, row: dict[str, Any], *, time_limit: float | None, soft_time_limit: float | None
    ) -> AbstractContextManager[None]: ...


def time_limits(row: dict[str, Any], job: Job) -> tuple[float | None, float | None]:
    """``(time_limit, soft_time_limit)`` of a claimed job: the row's (set at enqueue), else the job's."""
    hard = row.get("time_limit")
    soft = row.get("soft_time_limit")
    return (job.time_limit if hard is None else hard, job.soft_time_limit if soft is None else soft)


def _send(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send a signal; a failing receiver is logged, never allowed to fail the job or the worker."""
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response, exc_info=response)


def _outcome(row: dict[str, Any], status: JobStatus, now: datetime, **fields: Any) -> Outcome:
    outcome: Outcome = {
        "id": row["id"],
        "attempt": row["attempt"],
        "status": status.value,
        "started_at": None,  # the worker process sets it: when the ledger started the job
        "finished_at": now,
        "result": None,
        "error": None,
        "run_at": None,
        "workflow": row.get("workflow", True),  # a workflow job's outcome is recorded with its hand-off
    }
    outcome.update(fields)  # type: ignore[typeddict-item]
    return outcome


def failure_outcome(
    row: dict[str, Any],
    exc: BaseException,
    now: datetime,
    *,
    retry_in: float | None,
) -> Outcome:
    """A failed attempt: queued again ``retry_in`` seconds from ``now``, or failed for good when ``None``."""
    error = serialization.dumps(error_entry(exc, at=now, attempt=row["attempt"]), "error")
    if retry_in is None:
        return _outcome(row, JobStatus.FAILED, now, error=error)
    return _outcome(row, JobStatus.QUEUED, now, error=error, run_at=now + timedelta(seconds=retry_in))


def cancelled_outcome(row: dict[str, Any], message: str, now: datetime) -> Outcome:
    """A running attempt ended by a cancel (``row`` needs ``id`` and ``attempt``)."""
    error = error_entry(JobCancelled, at=now, attempt=row["attempt"], message=message)
    return _outcome(row, JobStatus.CANCELLED, now, error=serialization.dumps(error, "error"))


@dataclass
class Prepared:
    """A claimed job ready to call: its registered job, decoded arguments and context (``None`` if unbound)."""

    job: Job
    args: list[Any]
    kwargs: dict[str, Any]
    ctx: Any
    state: Any = None  # what the job's hooks keep between its start and its end


def lookup(name: str) -> Job:
    """The registered job ``name``; a ``django.tasks`` task not imported yet is resolved by the backend (which
    imports it only from an installed app's module, and only if it is a task of a djtasks backend)."""
    try:
        return registry.get(name)
    except NotRegistered:
        try:
            from ..backend import resolve_job
        except ImportError:  # Django < 6: no django.tasks, so no task to resolve
            raise NotRegistered(name) from None
        return resolve_job(name)


def prepare(row: dict[str, Any], worker_id: UUID | None = None) -> Prepared | dict[str, Any]:
    """Look the job up and decode its arguments, then send the started signals; a failure outcome if it
    cannot run (unknown name, undecodable arguments)."""
    try:
        job = lookup(row["name"])
    except NotRegistered as exc:
        logger.error("job %s: %s", row["id"], exc)
        return failure_outcome(row, exc, timezone.now(), retry_in=None)
    try:
        args = serialization.loads(row["args"])
        kwargs = serialization.loads(row["kwargs"])
    except Exception as exc:  # noqa: BLE001 - a corrupt row fails its job, not the worker
        return failure_outcome(row, exc, timezone.now(), retry_in=None)
    hooks, state = job.hooks, None
    if hooks is not None:
        try:
            ctx, state = hooks.started(row, args, kwargs, worker_id)
        except Exception as exc:
            logger.exception("job %s: could not prepare its context", row["id"])
            return failure_outcome(
                row,
                exc,
                timezone.now(),
                retry_in=job.retry_delay(row["attempt"]) if row["attempt"] < row["max_attempts"] else None,
            )
    else:
        ctx = JobContext(row["id"], job.name, row["attempt"], row["max_attempts"], row["queue"]) if job.bind else None
    _send(signals.job_started, job, job_id=row["id"], attempt=row["attempt"])
    return Prepared(job, args, kwargs, ctx, state)


def success_outcome(row: dict[str, Any], prepared: Prepared, value: Any) -> dict[str, Any]:
    now = timezone.now()
    outcome = _outcome(row, JobStatus.SUCCEEDED, now, result=prepared.job.encode_result(value))
    ctx = prepared.ctx
    if ctx is not None and getattr(ctx, "cancel_observed", False):
        result, outcome = outcome["result"], cancelled_outcome(row, CANCELLED_WHILE_RUNNING, now)
        outcome["result"] = result
    return outcome


def error_outcome(row: dict[str, Any], job: Job, exc: BaseException) -> dict[str, Any]:
    """The outcome of a job that raised ``exc``: retried while attempts and ``retry_on`` allow, else failed."""
    now = timezone.now()
    attempt, max_attempts = row["attempt"], row["max_attempts"]
    if isinstance(exc, Retry):
        error = exc.exc or exc
        if attempt < max_attempts:
            delay = exc.countdown if exc.countdown is not None else job.retry_delay(attempt)
            return failure_outcome(row, error, now, retry_in=delay)
        return failure_outcome(row, error, now, retry_in=None)
    retry_in = job.retry_delay(attempt) if job.should_retry(exc, attempt, max_attempts) else None
    return failure_outcome(row, exc, now, retry_in=retry_in)


def flush_progress(ctx: Any) -> None:
    """Store the last ``set_progress()`` value not written yet, before the outcome (sync code only)."""
    flush = getattr(ctx, "flush_progress", None)
    if flush is not None:
        flush()


def conclude(row: dict[str, Any], prepared: Prepared, outcome: dict[str, Any]) -> dict[str, Any]:
    """Log and signal the outcome; returns it."""
    job = prepared.job
    status, attempt = outcome["status"], row["attempt"]
    if status == JobStatus.QUEUED:
        logger.warning("job %s %s attempt %s failed; retrying at %s", row["id"], job.name, attempt, outcome["run_at"])
        _send(
            signals.job_retrying,
            job,
            job_id=row["id"],
            attempt=attempt,
            run_at=outcome["run_at"],
            error=outcome["error"],
        )
    elif status == JobStatus.FAILED:
        logger.error("job %s %s failed on attempt %s", row["id"], job.name, attempt)
    _send(
        signals.job_finished,
        job,
        job_id=row["id"],
        attempt=attempt,
        status=status,
        result=outcome["result"],
        error=outcome["error"],
    )
    if job.hooks is not None:
        job.hooks.finished(row, prepared.state, outcome)
    return outcome


def execute(row: dict[str, Any], runtime: JobRuntime | None = None, worker_id: UUID | None = None) -> dict[str, Any]:
    """Run the claimed job ``row`` in this thread and return its outcome.

    ``runtime.running(...)`` wraps exactly the call of the job's function (so a soft time limit can only
    interrupt the job's own code). An ``async def`` job met here (no event loop in this process, or the first
    job of a task resolved on demand) runs to completion on a loop of its own.
    """
    began = timezone.now()  # a worker process overrides it with the start its ledger recorded
    outcome = _execute(row, runtime, worker_id)
    if outcome.get("started_at") is None:
        outcome["started_at"] = began
    return outcome


def _execute(row: dict[str, Any], runtime: JobRuntime | None, worker_id: UUID | None) -> Outcome:
    if worker_id is None:
        worker_id = getattr(runtime, "id", None)
    prepared = prepare(row, worker_id)
    if not isinstance(prepared, Prepared):
        return prepared
    job, ctx = prepared.job, prepared.ctx
    if job.is_async:
        from .async_executor import run_coroutine_here

        return run_coroutine_here(row, prepared, runtime)
    hard, soft = time_limits(row, job)
    wrapper = runtime.running(row, time_limit=hard, soft_time_limit=soft) if runtime is not None else nullcontext()
    if time.monotonic() - getattr(_thread_state, "last_job_ended", 0.0) > IDLE_RECHECK_S:
        db.close_old_connections()  # a connection may have gone stale while this thread was idle
    try:
        with wrapper:
            value = (
                job.func(ctx, *prepared.args, **prepared.kwargs)
                if ctx is not None
                else job.func(*prepared.args, **prepared.kwargs)
            )
        outcome = success_outcome(row, prepared, value)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a job must not stop the worker either
        outcome = error_outcome(row, job, exc)
        if isinstance(exc, SoftTimeLimitExceeded):
            # It may have interrupted a database call half-way: do not reuse this thread's connections.
            db.connections.close_all()
    finally:
        flush_progress(ctx)
        # As Django does around a request: a job must not leak a broken or expired connection, nor
        # (with DEBUG) an ever-growing query log, into the next job on this thread.
        db.reset_queries()
        db.close_old_connections()
        _thread_state.last_job_ended = time.monotonic()
    return conclude(row, prepared, outcome)
