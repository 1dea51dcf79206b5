"""Runs one claimed job and turns what happened into an outcome for the completer.

Nothing raised by a job escapes this module: success, failure, retry, an unknown name, undecodable
arguments or an unserializable result each become an outcome, so the worker never dies on a bad job.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timedelta
from typing import Any

from django import db
from django.utils import timezone

from .. import serialization, signals
from ..exceptions import NotRegistered, Retry
from ..jobs import JobContext
from ..registry import registry
from ..status import JobStatus

logger = logging.getLogger("djtasks.worker")


def _send(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send a signal; a failing receiver is logged, never allowed to fail the job or the worker."""
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response, exc_info=response)


def error_entry(exc: BaseException, attempt: int, now: datetime, tb: str | None = None) -> dict[str, Any]:
    """What the ``errors`` list keeps of one failed attempt."""
    kind = type(exc)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "message": str(exc),
        "traceback": tb if tb is not None else "".join(traceback.format_exception(exc)),
        "attempt": attempt,
        "at": now.isoformat(),
    }


def _outcome(row: dict[str, Any], status: JobStatus, now: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "attempt": row["attempt"],
        "status": status.value,
        "finished_at": now,
        "result": None,
        "error": None,
        "run_at": None,
        **fields,
    }


def failure_outcome(
    row: dict[str, Any],
    exc: BaseException,
    now: datetime,
    *,
    retry_in: float | None,
) -> dict[str, Any]:
    """A failed attempt: queued again ``retry_in`` seconds from ``now``, or failed for good when ``None``."""
    error = serialization.dumps(error_entry(exc, row["attempt"], now), "error")
    if retry_in is None:
        return _outcome(row, JobStatus.FAILED, now, error=error)
    return _outcome(row, JobStatus.QUEUED, now, error=error, run_at=now + timedelta(seconds=retry_in))


def execute(row: dict[str, Any]) -> dict[str, Any]:
    """Run the claimed job ``row`` in this thread and return its outcome."""
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
    _send(signals.job_started, job, job_id=row["id"], attempt=attempt)
    db.close_old_connections()
    try:
        if job.bind:
            ctx = JobContext(row["id"], job.name, attempt, max_attempts, row["queue"])
            value = job.func(ctx, *args, **kwargs)
        else:
            value = job.func(*args, **kwargs)
        outcome = _outcome(row, JobStatus.SUCCEEDED, timezone.now(), result=serialization.dumps(value, "result"))
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
    finally:
        # As Django does around a request: a job must not leak a broken or expired connection, nor
        # (with DEBUG) an ever-growing query log, into the next job on this thread.
        db.reset_queries()
        db.close_old_connections()

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
