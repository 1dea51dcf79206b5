"""The rescuer: gives the running jobs of dead worker processes another chance.

A worker process that dies without saying so (SIGKILL, the OOM killer, a lost host, a supervisor that died
with it) leaves its jobs ``running`` and its ``djtasks_worker`` row aging. Once the row's heartbeat is older
than ``WORKER_TIMEOUT`` the rescuer deletes it. A job that had started (``started_at`` set: the worker
writes it in batches) is re-queued with the attempt counted, or failed with ``WorkerLost`` when attempts are
spent; a job only claimed ahead goes back to the queue with its attempt restored (``released``); a job
with a cancel request ends ``cancelled``. A job that runs for hours on a live worker is never touched: its
worker keeps heartbeating.

A job that started less than the completer's ``START_MARK_DELAY_S`` before the whole runworker died may not
be marked yet: it runs again uncharged. At-least-once holds; only the attempt count errs, on the side of
one more run. (When only the worker process dies, its supervisor knows every start from the start board.)

A late result from a worker declared dead cannot overwrite the re-run: completion is fenced by worker id
and attempt. The supervisor uses the same query, without waiting for the timeout, for the worker processes
it sees die.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..conf import djtasks_settings
from ..store import Store

logger = logging.getLogger("djtasks.maintenance")


@dataclass(frozen=True)
class RescueResult:
    """What one rescue did: the dead workers removed and the jobs rescued, by status after."""

    workers: frozenset[UUID] = frozenset()
    requeued: tuple[UUID, ...] = ()  # started: re-queued with the attempt counted
    released: tuple[UUID, ...] = ()  # only claimed ahead: back to the queue, attempt restored
    failed: tuple[UUID, ...] = ()
    cancelled: tuple[UUID, ...] = ()
    jobs: dict[UUID, int] = field(default_factory=dict)  # job id -> its attempt after the rescue

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> RescueResult:
        by_status: dict[str, list[UUID]] = {"queued": [], "released": [], "failed": [], "cancelled": []}
        for row in rows:
            if row["job_id"] is not None:
                uncharged = row["status"] == "queued" and not row["charged"]
                by_status["released" if uncharged else row["status"]].append(row["job_id"])
        return cls(
            workers=frozenset(row["worker_id"] for row in rows if row["worker_id"] is not None),
            requeued=tuple(by_status["queued"]),
            released=tuple(by_status["released"]),
            failed=tuple(by_status["failed"]),
            cancelled=tuple(by_status["cancelled"]),
            jobs={row["job_id"]: row["attempt"] for row in rows if row["job_id"] is not None},
        )

    def __bool__(self) -> bool:
        return bool(self.workers or self.jobs)

    def describe(self) -> str:
        return (
            f"{len(self.workers)} dead worker(s); {len(self.requeued)} job(s) re-queued, {len(self.failed)} failed "
            f"(attempts spent), {len(self.cancelled)} cancelled, {len(self.released)} never started and handed back"
        )


class Rescuer:
    """Maintenance service: ``run_once(now)`` rescues what died before ``now - WORKER_TIMEOUT``."""

    name = "rescuer"

    def __init__(self, store: Store, *, worker_timeout: float | None = None, interval: float | None = None) -> None:
        self.store = store
        self.worker_timeout = djtasks_settings.WORKER_TIMEOUT if worker_timeout is None else worker_timeout
        self.interval = djtasks_settings.rescue_interval if interval is None else interval

    def run_once(self, now: datetime) -> RescueResult:
        cutoff = now - timedelta(seconds=self.worker_timeout)
        rows = self.store.worker_rescue_many(now=now, cutoff=cutoff)
        result = RescueResult.from_rows(rows)
        if result:
            logger.warning(
                "rescuer: %s (silent for over %.0f s): re-queued %s, failed %s, cancelled %s, handed back %d",
                result.describe(),
                self.worker_timeout,
                [str(i) for i in result.requeued],
                [str(i) for i in result.failed],
                [str(i) for i in result.cancelled],
                len(result.released),
            )
            from ..worker.executor import report_rescued

            report_rescued(rows)
        return result
