"""Operator actions on jobs, shared by ``JobResult``, the admin and ``manage.py djtasks``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.db import DatabaseError
from django.utils import timezone

from .store import Store

logger = logging.getLogger("djtasks")


def _uuids(ids: Iterable[uuid.UUID | str]) -> list[uuid.UUID]:
    return [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in ids]


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
    return Store.for_django().job_cancel_many(now=timezone.now(), ids=_uuids(ids), terminate=terminate)


def cancel_requested(job_id: uuid.UUID) -> bool:
    """Whether a cancel was requested for ``job_id`` (what ``JobContext.is_cancelled()`` reads).

    A database error answers False (not known to be cancelled) rather than failing the job that asked.
    """
    try:
        return Store.for_django().job_cancel_requested(job_id)
    except DatabaseError as exc:
        logger.warning("job %s: could not read cancel_requested (%s)", job_id, exc)
        return False
