"""The rows that cross threads and processes in a worker: a claimed job and the outcome of one attempt.

The producer claims ``ClaimedJob`` rows (``store.job_claim_many``), hands them to job threads (``executor``),
which turn each into an ``Outcome``; the completer records outcomes in batches (``store.job_finish_many``),
fenced by ``id`` and ``attempt``. ``djtasks.testing`` runs the same path in one thread. Column values are as
the database returns them; ``args``, ``kwargs``, ``result`` and ``error`` are JSON text (``serialization``).
"""

from __future__ import annotations

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
    """A job row as claimed by a worker (``status`` is ``running``, or ``cancelled`` when it had expired)."""

    name: str
    queue: str
    priority: int
    status: str
    args: str
    kwargs: str
    max_attempts: int
    enqueued_at: datetime
    run_at: datetime
    time_limit: float | None
    soft_time_limit: float | None


class Outcome(JobAttempt):
    """How one attempt ended: ``status`` is ``succeeded``, ``failed``, ``cancelled``, or ``queued`` again
    (a retry, due at ``run_at``); ``result`` and ``error`` are JSON text or ``None``."""

    status: str
    finished_at: datetime
    result: str | None
    error: str | None
    run_at: datetime | None
