"""The rows that cross threads and processes on the hot path, typed, and the one way to build an error entry.

The producer claims ``ClaimedJob`` rows (``store.job_claim_many``), hands them to job threads (``executor``),
which turn each into an ``Outcome``; the completer records outcomes in batches (``store.job_finish_many``),
fenced by ``id`` and ``attempt``, together with the ``StartMark`` rows the ledger hands it (jobs whose function
started). ``djtasks.testing`` runs the same path in one thread. Column values are as the database returns them;
``args``, ``kwargs``, ``result`` and ``error`` are JSON text (``serialization``). ``ErrorEntry`` is one element of
a job's ``errors`` list: Python builds every one with ``error_entry()``, including the templates the SQL queries
merge the per-row fields into (``jsonb ||``), so no class path is spelled out in SQL.
"""

from __future__ import annotations

import traceback as tb_module
from datetime import datetime
from typing import NotRequired, TypedDict
from uuid import UUID


class JobAttempt(TypedDict):
    """What identifies one attempt of a job: enough to fence its outcome."""

    id: UUID
    attempt: int
    # Part of a workflow (chain, group, chord): its outcome is recorded with its hand-off. Missing means
    # "maybe", so a row of unknown origin takes the careful path.
    workflow: NotRequired[bool]


class ClaimedJob(JobAttempt):
    """A job row as claimed by a worker (``job_claim_many``, ``job_claim_limited_many``): ``status`` is
    ``running`` (claimed; its function may not have started yet) or ``cancelled`` (it had expired)."""

    name: str
    queue: str
    priority: int
    status: str
    args: str  # JSON text
    kwargs: str  # JSON text
    max_attempts: int
    enqueued_at: datetime
    run_at: datetime
    time_limit: float | None
    soft_time_limit: float | None
    # The enqueuing span's OpenTelemetry context (JSON text of its propagator's headers; ``tracing``), or None.
    trace_context: NotRequired[str | None]


class Outcome(JobAttempt):
    """How one attempt ended: ``status`` is ``succeeded``, ``failed``, ``cancelled``, or ``queued`` again
    (a retry, due at ``run_at``); ``result`` and ``error`` are JSON text or ``None``. ``started_at`` is when its
    function started (``None`` when it never did, e.g. expired or cancelled before its start)."""

    status: str
    started_at: datetime | None
    finished_at: datetime
    result: str | None
    error: str | None
    run_at: datetime | None
    # A job of a limited queue or job name: the queue whose workers to wake once it is written (flow control).
    notify: NotRequired[str]


class StartMark(TypedDict):
    """A job whose function started and has not finished yet: written so a rescuer counts its attempt."""

    id: UUID
    attempt: int
    started_at: datetime


class TerminateRequest(TypedDict):
    """A running job whose cancel asks its supervisor to kill the process (``job_terminate_requested_many``)."""

    id: UUID
    worker_id: UUID
    attempt: int


class ScheduleRow(TypedDict):
    """One schedule as the scheduler fires it (``schedule_due_many``, or an admin row via ``row_of``)."""

    id: int
    name: str
    job_name: str
    cron: str
    interval_seconds: float | None
    at: datetime | None
    timezone: str
    args: str  # JSON text
    kwargs: str  # JSON text
    queue: str
    priority: int | None
    next_fire_at: datetime | None
    catch_up: str
    expires_seconds: float | None
    unique: bool


class PeriodicJob(TypedDict):
    """A job a schedule's fire inserts (``job_insert_periodic_many``)."""

    id: UUID
    name: str
    queue: str
    priority: int
    args: str  # JSON text
    kwargs: str  # JSON text
    run_at: datetime
    expires_at: datetime | None
    max_attempts: int
    unique_key: str | None


class ErrorEntry(TypedDict, total=False):
    type: str  # dotted path of the exception class
    message: str
    traceback: str
    attempt: int
    at: str  # ISO 8601


def error_type(kind: type[BaseException]) -> str:
    """The dotted path an error entry names an exception class by."""
    return f"{kind.__module__}.{kind.__qualname__}"


def error_entry(
    exc: BaseException | type[BaseException],
    *,
    at: datetime,
    attempt: int | None = None,
    message: str | None = None,
    traceback: str | None = None,
) -> ErrorEntry:
    """One failed attempt as the ``errors`` list keeps it. For an exception instance the message and traceback
    default to its own; for a class (a template completed in SQL) they default to empty. ``attempt=None``
    leaves the key out, for a query that adds the row's attempt itself."""
    kind = exc if isinstance(exc, type) else type(exc)
    if message is None:
        message = "" if isinstance(exc, type) else str(exc)
    if traceback is None:
        traceback = "" if isinstance(exc, type) else "".join(tb_module.format_exception(exc))
    entry: ErrorEntry = {"type": error_type(kind), "message": message, "traceback": traceback, "at": at.isoformat()}
    if attempt is not None:
        entry["attempt"] = attempt
    return entry
