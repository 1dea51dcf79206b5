"""Claims jobs for this worker process: never more than its free slots, with one statement each time.

It sleeps until something can have changed: a NOTIFY for one of its queues (sent when an enqueueing
transaction commits), a slot freed by a finished job, the next scheduled job becoming due, or the poll
interval (the fallback for notifications missed while reconnecting, and the only wake-up without LISTEN).
Paused queues are not claimed from; limited ones go through ``FlowControl`` (see ``flowcontrol.py``): a full
limit is waited out asleep, woken by a finishing job of that queue (its worker NOTIFYs) or, for a rate limit,
after the time the limiter names.

After losing the database it reconnects with backoff. A claim whose answer was lost may still have been
committed, leaving jobs ``running`` under this worker that it never received; the first thing it does on
the new connection is hand back every running job of this worker it does not know about.
With a ``budget`` (``--max-jobs-per-child``) it claims at most that many jobs in all, then stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.utils import timezone

from ..rows import ClaimedJob
from ..status import JobStatus
from ..store import Store
from .db import CONNECTION_ERRORS, WorkerConnection
from .flowcontrol import REFRESH_S, FlowControl
from .ledger import Ledger
from .listener import Listener
from .metering import JobMeter
from .prefetch import PREFETCH_MAX, Durations
from .waits import Backoff, WakePipe

logger = logging.getLogger("djtasks.worker")


def ledger_capacity(slots: int) -> int:
    """The most jobs a producer ever holds at once with ``slots`` threads and async slots (``Producer.limits``)."""
    return slots + 2 * PREFETCH_MAX


class Producer:
    def __init__(
        self,
        *,
        worker_id: UUID,
        queues: Sequence[str],
        slots: int,
        submit: Callable[[list[ClaimedJob]], None],
        poll_interval: float,
        listen: bool,
        ledger: Ledger,
        alias: str | None = None,
        budget: int | None = None,
        durations: Durations | None = None,
        extra_slots: Callable[[], int] = lambda: 0,
    ) -> None:
        """``submit(jobs)`` enters claimed jobs in ``ledger`` and hands them to the job threads; every count
        the producer's limits need it reads from ``ledger``."""
        self.worker_id = worker_id
        self.queues = list(queues)
        self.slots = slots
        self.extra_slots = extra_slots  # slots beyond the threads: for async jobs, sized by the process
        self.submit = submit
        self.poll_interval = poll_interval
        self.listen = listen
        self.ledger = ledger
        # Claims need no durable commit: a claim lost in a server crash leaves its jobs queued (see db.py).
        self.db = WorkerConnection(alias, role="producer", prepare=True, durable=False)
        self.stopping = threading.Event()
        self.durations = durations or Durations()
        self._last_names: set[str] = set()
        self._expired: list[UUID] = []  # workflow jobs the claim expired, whose hand-off is not written yet
        self._wake = WakePipe()
        # LISTEN on this connection, on a direct one of its own (LISTEN_DATABASE), or nowhere (see listener.py).
        self.listener = Listener(
            self.db, enabled=listen, subscribe=self._subscribe, on_notify=self._on_notify, role="producer"
        )
        self.budget = budget  # jobs it may still claim; None = no limit
        self.exhausted = False  # stopped because the budget is spent
        self._reconnected = False
        self.flow = FlowControl(queues)
        self._options_refresh_s = REFRESH_S if self.listener.enabled else min(REFRESH_S, max(poll_interval, 1.0))
        self._synced = False
        # low_water() as of the last claim: job threads compare against it after every job, so it is read there
        # as an attribute and worked out once a claim.
        self.low_water_mark = slots
        self.meter: JobMeter | None = None  # set by the worker process when metrics are on (runworker --metrics-port)

    # -- called from other threads --------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.wake()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    def limits(self) -> tuple[int, int]:
        """``(in_process, outstanding)``: how many claimed jobs may be unfinished (threads plus the prefetch
        that recent run times allow) and how many may await their recorded outcome. The second is larger by
        one prefetch, so the next claim overlaps with the writing of the last batch's outcomes. Jobs claimed
        ahead are held ``running`` in the database but not started (``started_at`` NULL); at most ``slots``
        of them have started at any moment."""
        prefetch = self.durations.prefetch(self.slots, self._last_names)
        slots = self.slots + self.extra_slots()
        return slots + prefetch, slots + 2 * prefetch

    def low_water(self) -> int:
        """When this few claimed jobs are unfinished, the producer should claim again."""
        in_process, _ = self.limits()
        return max(self.slots, (in_process + self.slots) // 2)

    @property
    def free(self) -> int:
        in_process, outstanding = self.limits()
        return min(in_process - self.ledger.unfinished, outstanding - self.ledger.outstanding)

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                if self._reconnected:
                    self._release_strays()
                self.listener.ensure()
                timeout = self._claim_once()
                backoff.reset()
                if timeout is not None:
                    self._wait(timeout)
            except CONNECTION_ERRORS as exc:
                pause = backoff.next()
                logger.warning("producer lost the database (%s); reconnecting in %.1f s", exc, pause)
                self.db.reset()
                self.listener.reset()
                self._reconnected = True
                self.flow.stale = True  # option changes may have been missed
                self.stopping.wait(pause)
        # The wake-up pipe stays open: job threads and the completer may still wake it.
        self.db.close()
        self.listener.close()

    def _release_strays(self) -> None:
        released = self.db.store.job_release_many(
            now=timezone.now(), worker_id=self.worker_id, keep_ids=self.ledger.known_ids()
        )
        self._reconnected = False
        if released:
            logger.warning("producer: handed back %d job(s) claimed while the connection broke", len(released))

    @staticmethod
    def _subscribe(store: Store) -> None:
        # Notifications that arrive while a query runs go to the listener's handler (_on_notify) instead of
        # piling up in psycopg's backlog; the wait reads them straight off the socket.
        store.queue_listen()
        store.queue_options_listen()

    def _on_notify(self, notify: Any) -> None:
        if notify.channel == "djtasks_queue":
            self.flow.stale = True

    def _claim_once(self) -> float | None:
        """Claim what fits; return how long to sleep, or None to claim again at once."""
        in_process, _ = self.limits()
        free = self.free
        if self.budget is not None:
            free = min(free, self.budget)
        if free <= 0:
            return self.poll_interval
        if free < self.slots and free * 2 < in_process and self.ledger.waiting > 0:
            # Jobs claimed ahead are still waiting for a thread: claim again once more slots are free,
            # in one larger statement rather than many small ones.
            return self.poll_interval
        store = self.db.store
        if not self._synced:
            self.flow.sync(store, timezone.now())
            self._synced = True
        if self.flow.stale or self.flow.age() >= self._options_refresh_s:
            self.flow.refresh(store)
        flow = self.flow
        now = timezone.now()
        claim_began = time.perf_counter() if self.meter is not None else 0.0
        rows: list[ClaimedJob] = []
        limited = None
        more = False  # it took all it asked for: claim again at once, there may be more waiting
        if flow.any_limited:
            # Before the unlimited queues, so a backlog there never keeps a limited queue from its threads.
            # Never claimed ahead: only as many as there are idle threads, and each job starts at once.
            idle = min(free, self.slots - self.ledger.unfinished)
            if idle > 0:
                limited = flow.claim(store, now=now, worker_id=self.worker_id, free=idle)
                rows = limited.rows
                more = bool(rows) and len(rows) == idle
        left = free - len(rows)
        if flow.fast and left > 0:
            if flow.job_limits:  # jobs with @job(concurrency=) are the limited claim's
                plain = store.job_claim_skipping_many(
                    now=now, worker_id=self.worker_id, queues=flow.fast, limit=left, skip_names=list(flow.job_limits)
                )
            else:
                plain = store.job_claim_many(now=now, worker_id=self.worker_id, queues=flow.fast, limit=left)
            more = more or len(plain) == left
            rows += plain
        if self.meter is not None:
            self.meter.claimed(len(rows), time.perf_counter() - claim_began)
        if rows:
            self._last_names = {row["name"] for row in rows}
            self.low_water_mark = self.low_water()
            self._expired += [row["id"] for row in rows if row["status"] != JobStatus.RUNNING and row["workflow"]]
        if self._expired:
            # An expired workflow step ends its workflow like a cancel does. Its own statement after the claim
            # (kept here and written again after a lost connection; idempotent for a cancelled job).
            self.db.store.job_handoff_many(now=now, ids=self._expired)
            self._expired = []
        claimed = []
        for row in rows:
            if row["status"] != JobStatus.RUNNING:  # expired before it started: the claim cancelled it
                logger.info("job %s %s expired before it started", row["id"], row["name"])
            else:
                claimed.append(row)
        if self.budget is not None:
            self.budget -= len(claimed)
        if claimed:
            self.submit(claimed)
        if self.budget == 0:
            self.exhausted = True
            self.stopping.set()
            return None
        if more:
            return None
        # A limited queue that is full is left out: only a finishing job (a NOTIFY) or its rate limiter's
        # next start (limited.wait) can change that, so looking at its due jobs would only spin.
        watched = flow.fast + (limited.open_queues if limited is not None else [])
        sleep = self.poll_interval
        if limited is not None and limited.wait is not None:
            sleep = min(sleep, limited.wait)
        if not watched:
            return sleep
        horizon = now + timedelta(seconds=self.poll_interval)
        # Jobs of a job name at its limit are due but cannot start: looking at them would spin as well.
        skip = limited.full_names if limited is not None else list(flow.job_limits)
        next_run_at = store.job_next_run_at(queues=watched, horizon=horizon, skip_names=skip)
        if next_run_at is None:
            return sleep
        return max(0.0, min(sleep, (next_run_at - timezone.now()).total_seconds()))

    def _wait(self, timeout: float) -> None:
        # With no free slot a notification could not be acted on: leave it queued on the socket.
        # A wake-up is all a queue notification means (the claim finds what is due); an options one
        # (channel djtasks_queue) makes the next claim re-read the options first.
        self.listener.wait(self._wake, timeout, notifications=self.free > 0, on_channel=self._on_channel)

    def _on_channel(self, channel: str) -> None:
        if channel == "djtasks_queue":
            self.flow.stale = True
