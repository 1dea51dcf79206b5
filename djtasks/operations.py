"""Operator actions on jobs, shared by ``JobResult``, the admin and ``manage.py djtasks``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.utils import timezone

from .store import Store


def cancel_jobs(ids: Iterable[uuid.UUID | str]) -> dict[uuid.UUID, str]:
    """Cancel jobs: a queued one becomes ``cancelled`` at once and never runs; a running one gets
    ``cancel_requested`` set, which its worker acts on. Finished jobs are left alone.

    Returns ``{job_id: status}`` for the jobs it changed (``"cancelled"`` or ``"running"``).
    """
    job_ids = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in ids]
    return Store.for_django().job_cancel_many(now=timezone.now(), ids=job_ids)
