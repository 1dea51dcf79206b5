"""Runs one claimed job and turns what happened into an outcome for the completer.

Nothing raised by a job escapes this module: success, failure, retry, an unknown name, undecodable
arguments or an unserializable result each become an outcome, so the worker never dies on a bad job.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Protocol

from django import db
from django.utils import timezone

from .. import serialization, signals
from ..exceptions import JobCancelled, NotRegistered, Retry, SoftTimeLimitExceeded
from ..jobs import Job, JobContext
from ..registry import registry
from ..rows import ClaimedJob, Outcome, error_entry
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
        self, row: ClaimedJob, *, time_limit: float | None, soft_time_limit: float | None
    ) -> AbstractContextManager[None]: ...


def time_limits(row: ClaimedJob, job: Job) -> tuple[float | None, float | None]:
    """``(time_limit, soft_time_limit)`` of a claimed job: the row's (set at enqueue), else the job's."""
    hard = row.get("time_limit")
    soft = row.get("soft_time_limit")
    return (job.time_limit if hard is None else hard, job.soft_time_limit if soft is None else soft)


def _send(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send a signal; a failing receiver is logged, never allowed to fail the job or the worker."""
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response, exc_info=response)


class Attempt(Protocol):
    """What an outcome needs of its job: a claimed job, an outcome, or the supervisor's record of one."""

    def __getitem__(self, key: str, /) -> Any: ...


def _outcome(row: Attempt, status: JobStatus, now: datetime, **fields: Any) -> Outcome:
    outcome: Outcome = {
        "id": row["id"],
        "attempt": row["attempt"],
        "status": status.value,
        "started_at": None,
        "finished_at": now,
        "result": None,
        "error": None,
        "run_at": None,
    }
    outcome.update(fields)  # type: ignore[typeddict-item]
    return outcome


def failure_outcome(
    row: Attempt,
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


def cancelled_outcome(row: Attempt, message: str, now: datetime) -> Outcome:
    """A running attempt ended by a cancel (``row`` needs ``id`` and ``attempt``)."""
    error = error_entry(JobCancelled, at=now, attempt=row["attempt"], message=message)
    return _outcome(row, JobStatus.CANCELLED, now, error=serialization.dumps(error, "error"))


def execute(row: ClaimedJob, runtime: JobRuntime | None = None) -> Outcome:
    """Run the claimed job ``row`` in this thread and return its outcome.

    ``runtime.running(...)`` wraps exactly the call of the job's function (so a soft time limit can only
    interrupt the job's own code).
    """
    try:
        job = registry.get(row["name"])
    except NotRegistered as exc:
        logger.error("job %s: %s", row["id"], exc)
        return failure_outcome(row, exc, timezone.now(), retry_in=None)
    try:
        args = serialization.loads(row["args"])
        kwargs = serialization.loads(row["kwargs"])
    except Exception as exc:  # noqa: BLE001 - a corrupt row fails its job, not the worker
        return failure_outcome(row, exc, timezone.now(), retry_in=None)

    attempt, max_attempts = row["attempt"], row["max_attempts"]
    hard, soft = time_limits(row, job)
    wrapper = runtime.running(row, time_limit=hard, soft_time_limit=soft) if runtime is not None else nullcontext()
    ctx = JobContext(row["id"], job.name, attempt, max_attempts, row["queue"]) if job.bind else None
    _send(signals.job_started, job, job_id=row["id"], attempt=attempt)
    if time.monotonic() - getattr(_thread_state, "last_job_ended", 0.0) > IDLE_RECHECK_S:
        db.close_old_connections()  # a connection may have gone stale while this thread was idle
    try:
        with wrapper:
            value = job.func(ctx, *args, **kwargs) if ctx is not None else job.func(*args, **kwargs)
        now = timezone.now()
        outcome = _outcome(row, JobStatus.SUCCEEDED, now, result=serialization.dumps(value, "result"))
        if ctx is not None and ctx.cancel_observed:
            result, outcome = outcome["result"], cancelled_outcome(row, CANCELLED_WHILE_RUNNING, now)
            outcome["result"] = result
    except Retry as request:
        now = timezone.now()
        exc = request.exc or request
        if attempt < max_attempts:
            delay = request.countdown if request.countdown is not None else job.retry_delay(attempt)
            outcome = failure_outcome(row, exc, now, retry_in=delay)
        else:
            outcome = failure_outcome(row, exc, now, retry_in=None)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a job must not stop the worker either
        now = timezone.now()
        retry_in = job.retry_delay(attempt) if job.should_retry(exc, attempt, max_attempts) else None
        outcome = failure_outcome(row, exc, now, retry_in=retry_in)
        if isinstance(exc, SoftTimeLimitExceeded):
            # It may have interrupted a database call half-way: do not reuse this thread's connections.
            db.connections.close_all()
    finally:
        # As Django does around a request: a job must not leak a broken or expired connection, nor
        # (with DEBUG) an ever-growing query log, into the next job on this thread.
        db.reset_queries()
        db.close_old_connections()
        _thread_state.last_job_ended = time.monotonic()

    status = outcome["status"]
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
    return outcome
