"""Operator actions on jobs, shared by ``JobResult``, the admin and ``manage.py djtasks``.

Retry, requeue and delete take any number of ids and work through them in batches of ``BATCH_SIZE`` (one
statement each), so "select all 50,000 failed jobs, retry" builds no giant statement; each batch NOTIFYs the
queues it refilled, like an enqueue does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator

from django.db import DatabaseError
from django.utils import timezone

from .cursors import django_store
from .ids import uuid7

BATCH_SIZE = 1000  # ids per statement


def _uuids(ids: Iterable[uuid.UUID | str]) -> Iterator[uuid.UUID]:
    for i in ids:
        yield i if isinstance(i, uuid.UUID) else uuid.UUID(str(i))


def _batches(ids: Iterable[uuid.UUID | str]) -> Iterator[list[uuid.UUID]]:
    batch: list[uuid.UUID] = []
    for job_id in _uuids(ids):
        batch.append(job_id)
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


logger = logging.getLogger("djtasks")


def cancel_jobs(ids: Iterable[uuid.UUID | str], *, terminate: bool = False) -> dict[uuid.UUID, str]:
    """Cancel jobs: a queued one becomes ``cancelled`` at once and never runs; a running one gets
    ``cancel_requested`` set. Finished jobs are left alone.

    A running job stops cooperatively: its code sees ``ctx.is_cancelled()`` become True, returns or raises,
    and ends ``cancelled``. With ``terminate=True`` the supervisor of the worker process running it kills
    that process (within about a second), records the job ``cancelled`` and hands the process's other jobs
    back to the queue. Either way the request is stored in the row, so it outlives worker restarts: a
    cancelled job whose worker dies is not run again.

    Returns ``{job_id: status}`` for the jobs it changed (``"cancelled"`` or ``"running"``).
    """
    store = django_store()
    changed: dict[uuid.UUID, str] = {}
    for batch in _batches(ids):
        changed.update(store.job_cancel_many(now=timezone.now(), ids=batch, terminate=terminate))
    return changed


def retry_jobs(ids: Iterable[uuid.UUID | str]) -> set[uuid.UUID]:
    """Put failed or cancelled jobs back in their queue, due now, and wake the workers (NOTIFY).

    The row is reused: its id, arguments and error history stay, the attempt count goes on (the next run is
    attempt n+1) and ``max_attempts`` is raised if needed so that at least that one attempt is allowed. An
    ``expires_at`` already past is cleared. Jobs in other states, and jobs whose ``unique_key`` is held by an
    active job, are left alone, and so is a workflow step cancelled before its input arrived (its parent never
    succeeded). A retried workflow step runs alone: the steps after it stay cancelled. Returns the ids retried.
    """
    store = django_store()
    retried: set[uuid.UUID] = set()
    for batch in _batches(ids):
        retried |= store.job_retry_many(now=timezone.now(), ids=batch)
    return retried


def requeue_jobs(ids: Iterable[uuid.UUID | str]) -> dict[uuid.UUID, uuid.UUID]:
    """Enqueue a fresh copy of each finished (succeeded, failed or cancelled) job: same name, queue,
    priority, arguments and ``max_attempts``, a new id, no history, due now, outside any group or chain.
    The original stays as it is. Returns ``{original_id: new_id}`` for the copies made.
    """
    store = django_store()
    copies: dict[uuid.UUID, uuid.UUID] = {}
    for batch in _batches(ids):
        new_ids = [uuid7() for _ in batch]
        made = store.job_requeue_many(now=timezone.now(), ids=batch, new_ids=new_ids)
        copies.update({old: new for old, new in zip(batch, new_ids, strict=True) if new in made})
    return copies


def delete_jobs(ids: Iterable[uuid.UUID | str]) -> set[uuid.UUID]:
    """Delete jobs, except running ones (cancel those first, or their worker would finish a missing row).
    Deleting a workflow step that has not run cancels the steps after it. Returns the ids deleted."""
    store = django_store()
    deleted: set[uuid.UUID] = set()
    for batch in _batches(ids):
        deleted |= store.job_delete_many(ids=batch, now=timezone.now())
    return deleted


def cancel_requested(job_id: uuid.UUID) -> bool:
    """Whether a cancel was requested for ``job_id`` (what ``JobContext.is_cancelled()`` reads).

    A database error answers False (not known to be cancelled) rather than failing the job that asked.
    """
    try:
        return django_store().job_cancel_requested(job_id)
    except DatabaseError as exc:
        logger.warning("job %s: could not read cancel_requested (%s)", job_id, exc)
        return False


def set_progress(job_id: uuid.UUID, attempt: int, progress: str) -> None:
    """Store a running job's progress (JSON text), for ``JobContext.set_progress``.

    Runs on the job thread's Django connection (in autocommit unless the job holds a transaction open). A
    database error is logged, never raised: progress must not fail the job that reports it.
    """
    try:
        django_store().job_progress_set(id=job_id, attempt=attempt, progress=progress)
    except DatabaseError as exc:
        logger.warning("job %s: could not store progress (%s)", job_id, exc)
