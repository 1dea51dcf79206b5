"""A claimed job's way through a worker, shared by the thread executor (``executor``) and the event loop
(``async_executor``): look the job up and prepare its call, then turn what happened into an outcome for the
completer (success, failure, retry, cancel), and log and signal it.

Nothing raised by a job escapes: an unknown name, undecodable arguments or an unserializable result each
become an outcome, so the worker never dies on a bad job.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from django.utils import timezone

from .. import serialization, signals
from ..exceptions import JobCancelled, NotRegistered, Retry, SerializationError
from ..jobs import Job, JobContext
from ..registry import registry
from ..rows import ClaimedJob, ErrorEntry, JobAttempt, Outcome, error_entry
from ..status import JobStatus

logger = logging.getLogger("djtasks.worker")

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


def storable_error(exc: BaseException, attempt: int, now: datetime) -> ErrorEntry:
    """``rows.error_entry`` of a job's exception, whatever its text holds: a NUL or a lone surrogate in the message
    or traceback is written out visibly (``storable_text``), and an exception whose ``__str__`` fails is
    recorded as unprintable, so the entry can always be stored."""
    kind = type(exc)
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails must still be recorded
        message = f"<unprintable {kind.__qualname__} object>"
    return error_entry(
        exc,
        at=now,
        attempt=attempt,
        message=serialization.storable_text(message),
        traceback=serialization.storable_text("".join(traceback.format_exception(exc))),
    )


def _outcome(
    row: JobAttempt,
    status: JobStatus,
    now: datetime,
    *,
    result: str | None = None,
    error: str | None = None,
    run_at: datetime | None = None,
) -> Outcome:
    return {
        "id": row["id"],
        "attempt": row["attempt"],
        "status": status.value,
        "started_at": None,  # the worker process sets it: when the ledger started the job (else execute())
        "finished_at": now,
        "result": result,
        "error": error,
        "run_at": run_at,
        "workflow": row.get("workflow", True),  # a workflow job's outcome is recorded with its hand-off
    }


def failure_outcome(
    row: JobAttempt,
    exc: BaseException,
    now: datetime,
    *,
    retry_in: float | None,
) -> Outcome:
    """A failed attempt: queued again ``retry_in`` seconds from ``now``, or failed for good when ``None``."""
    error = serialization.dumps(storable_error(exc, row["attempt"], now), "error")
    if retry_in is None:
        return _outcome(row, JobStatus.FAILED, now, error=error)
    return _outcome(row, JobStatus.QUEUED, now, error=error, run_at=now + timedelta(seconds=retry_in))


def cancelled_outcome(row: JobAttempt, message: str, now: datetime) -> Outcome:
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
    raised: BaseException | None = None  # what the job raised, for the job_retrying / job_failed signals


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


def prepare(
    row: ClaimedJob, worker_id: UUID | None = None, clock: Callable[[], datetime] | None = None
) -> Prepared | Outcome:
    """Look the job up and decode its arguments, then send the started signals; a failure outcome if it
    cannot run (unknown name, undecodable arguments). ``clock`` (default ``timezone.now``) dates that outcome."""
    now = clock or timezone.now
    try:
        job = lookup(row["name"])
    except NotRegistered as exc:
        logger.error("job %s: %s", row["id"], exc)
        return report(row["name"], row, failure_outcome(row, exc, now(), retry_in=None), exc)
    try:
        args = serialization.loads(row["args"])
        kwargs = serialization.loads(row["kwargs"])
    except Exception as exc:  # noqa: BLE001 - a corrupt row fails its job, not the worker
        return report(job, row, failure_outcome(row, exc, now(), retry_in=None), exc)
    hooks, state = job.hooks, None
    if hooks is not None:
        try:
            ctx, state = hooks.started(row, args, kwargs, worker_id)
        except Exception as exc:
            logger.exception("job %s: could not prepare its context", row["id"])
            failed = failure_outcome(
                row,
                exc,
                now(),
                retry_in=job.retry_in(row["attempt"]) if row["attempt"] < row["max_attempts"] else None,
            )
            return report(job, row, failed, exc)
    else:
        ctx = JobContext(row["id"], job.name, row["attempt"], row["max_attempts"], row["queue"]) if job.bind else None
    _send(signals.job_started, job, job_id=row["id"], attempt=row["attempt"])
    return Prepared(job, args, kwargs, ctx, state)


def success_outcome(
    row: ClaimedJob, prepared: Prepared, value: Any, clock: Callable[[], datetime] | None = None
) -> Outcome:
    """The outcome of a job that returned ``value``; failed for good if the value cannot be stored."""
    now = (clock or timezone.now)()
    try:
        result = prepared.job.encode_result(value)
    except SerializationError as exc:
        # Not retried: the function ran to its end, and running it again would repeat what it did only to
        # return the same value. The encoder's own frames say nothing the message does not.
        exc.__traceback__ = None
        return failure_outcome(row, exc, now, retry_in=None)
    outcome = _outcome(row, JobStatus.SUCCEEDED, now, result=result)
    ctx = prepared.ctx
    if ctx is not None and getattr(ctx, "cancel_observed", False):
        outcome = {**cancelled_outcome(row, CANCELLED_WHILE_RUNNING, now), "result": outcome["result"]}
    return outcome


def error_outcome(
    row: ClaimedJob, job: Job, exc: BaseException, clock: Callable[[], datetime] | None = None
) -> Outcome:
    """The outcome of a job that raised ``exc``: retried while attempts and ``retry_on`` allow, else failed."""
    now = (clock or timezone.now)()
    attempt, max_attempts = row["attempt"], row["max_attempts"]
    if isinstance(exc, Retry):
        error = exc.exc or exc
        if attempt < max_attempts:
            delay = job.retry_in(attempt, countdown=exc.countdown)
            return failure_outcome(row, error, now, retry_in=delay)
        return failure_outcome(row, error, now, retry_in=None)
    retry_in = job.retry_in(attempt) if job.should_retry(exc, attempt, max_attempts) else None
    return failure_outcome(row, exc, now, retry_in=retry_in)


def flush_progress(ctx: Any) -> None:
    """Store the last ``set_progress()`` value not written yet, before the outcome (sync code only)."""
    flush = getattr(ctx, "flush_progress", None)
    if flush is not None:
        flush()


def conclude(row: ClaimedJob, prepared: Prepared, outcome: Outcome) -> Outcome:
    """Log and signal the outcome, then the job's hooks; returns it."""
    raised = prepared.raised
    if isinstance(raised, Retry):
        raised = raised.exc or raised  # ctx.retry(exc=...): the error it retries for
    report(prepared.job, row, outcome, raised)
    if prepared.job.hooks is not None:
        prepared.job.hooks.finished(row, prepared.state, outcome)
    return outcome


def report(sender: Job | str, row: JobAttempt, outcome: Outcome, raised: BaseException | None) -> Outcome:
    """Log an attempt's outcome and send ``job_retrying`` / ``job_failed`` / ``job_finished``. Payloads are
    decoded only for a signal someone listens to, so a worker without receivers pays nothing for them."""
    status, attempt = outcome["status"], row["attempt"]
    name = sender if isinstance(sender, str) else sender.name
    attempt_signal: Any = None  # an attempt that failed: job_retrying (with its new due time) or job_failed
    extra: dict[str, Any] = {}
    if status == JobStatus.QUEUED:
        logger.warning("job %s %s attempt %s failed; retrying at %s", row["id"], name, attempt, outcome["run_at"])
        attempt_signal, extra = signals.job_retrying, {"run_at": outcome["run_at"]}
    elif status == JobStatus.FAILED:
        logger.error("job %s %s failed on attempt %s", row["id"], name, attempt)
        attempt_signal = signals.job_failed
    if attempt_signal is not None and attempt_signal.has_listeners(sender):
        error = serialization.loads(outcome["error"])
        _send(attempt_signal, sender, job_id=row["id"], attempt=attempt, **extra, error=error, exception=raised)
    # has_listeners() takes the signal's lock and walks its receivers even when there are none: look first.
    if signals.job_finished.receivers and signals.job_finished.has_listeners(sender):
        _send(
            signals.job_finished,
            sender,
            job_id=row["id"],
            attempt=attempt,
            status=status,
            result=None if outcome["result"] is None else serialization.loads(outcome["result"]),
            error=None if outcome["error"] is None else serialization.loads(outcome["error"]),
        )
    return outcome


def report_rescued(rows: list[dict[str, Any]]) -> None:
    """Send the attempt signals for jobs rescued from a dead worker process (``worker_rescue_many`` rows), in
    the process that rescued them: re-queued ones ``job_retrying``, failed ones ``job_failed``, and all of
    them ``job_finished``. Without receivers it does nothing."""
    if not (signals.job_retrying.receivers or signals.job_failed.receivers or signals.job_finished.receivers):
        return
    for row in rows:
        if row.get("job_id") is None or not row.get("charged", True):
            continue  # a job only claimed ahead went back uncharged: no attempt ended, nothing to signal
        name = row["name"]
        sender: Job | str = registry.get(name) if name in registry else name
        status = row["status"]
        outcome: Outcome = {
            "id": row["job_id"],
            "attempt": row["attempt"],
            "status": status,
            "started_at": None,  # a signal's outcome: not written back
            "finished_at": row["run_at"],
            "result": None,
            "error": row["error"],
            "run_at": row["run_at"] if status == JobStatus.QUEUED else None,
        }
        try:
            report(sender, outcome, outcome, None)
        except Exception:  # a bad row must not stop the rescue's bookkeeping
            logger.exception("job %s: could not send the signals of its rescue", row["job_id"])
