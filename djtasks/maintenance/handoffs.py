"""Hands on workflow jobs whose hand-off never ran, so no step waits forever on a job that will not succeed.

Every hand-off is written in the transaction that records its job finished, except one: a workflow step that
expired before it started is cancelled by the claim, and its worker hands it on in the next statement. A worker
killed between the two leaves the steps after it ``waiting`` on a cancelled job. This service finds such jobs
(a waiting step whose parent, or a member of the group it waits for, failed or was cancelled) and hands them on,
which cancels the steps downstream with an error naming the job. ``job_handoff_many`` is idempotent for finished
jobs, so a hand-off that races with the worker's own does no harm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..store import Store

logger = logging.getLogger("djtasks.maintenance")

HANDOFF_INTERVAL_S = 30.0  # how often the supervisor looks for stranded steps (a rare event; a cheap query)
BATCH_SIZE = 500  # stranded jobs handed on per run_once()


@dataclass(frozen=True)
class HandoffResult:
    """What one run did: the stranded jobs handed on and the waiting steps that were cancelled."""

    jobs: int = 0
    cancelled: int = 0


class Handoffs:
    """Maintenance service: ``run_once(now)`` hands on up to ``BATCH_SIZE`` stranded workflow jobs."""

    name = "handoffs"

    def __init__(self, store: Store, *, interval: float = HANDOFF_INTERVAL_S) -> None:
        self.store = store
        self.interval = interval

    def run_once(self, now: datetime) -> HandoffResult:
        ids = self.store.job_stranded_many(limit=BATCH_SIZE)
        if not ids:
            return HandoffResult()
        done = self.store.job_handoff_many(now=now, ids=ids)
        result = HandoffResult(jobs=len(ids), cancelled=int(done["cancelled"]))
        logger.warning(
            "handoffs: %s workflow job(s) had not been handed on (their worker died first); %s waiting step(s) "
            "cancelled",
            result.jobs,
            result.cancelled,
        )
        return result
