"""Claims jobs for this worker process: never more than its free slots, with one statement each time.

It sleeps until something can have changed: a NOTIFY for one of its queues (sent when an enqueueing
transaction commits), a slot freed by a finished job, the next scheduled job becoming due, or the poll
interval (the fallback for notifications missed while reconnecting, and the only wake-up without LISTEN).

After losing the database it reconnects with backoff. A claim whose answer was lost may still have been
committed, leaving jobs ``running`` under this worker that it never received; the first thing it does on
the new connection is hand back every running job of this worker it does not know about.
With a ``budget`` (``--max-jobs-per-child``) it claims at most that many jobs in all, then stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from uuid import UUID

from django.utils import timezone

from ..rows import ClaimedJob
from ..status import JobStatus
from .db import CONNECTION_ERRORS, WorkerConnection
from .prefetch import Durations

logger = logging.getLogger("djtasks.worker")

RECONNECT_START_S = 0.2  # first pause after losing the database; doubles up to RECONNECT_MAX_S
RECONNECT_MAX_S = 5.0


class Producer:
    def __init__(
        self,
        *,
        worker_id: UUID,
        queues: Sequence[str],
        slots: int,
        submit: Callable[[ClaimedJob], None],
        poll_interval: float,
        listen: bool,
        alias: str | None = None,
        known_ids: Callable[[], Iterable[UUID]] = tuple,
        budget: int | None = None,
        durations: Durations | None = None,
        waiting: Callable[[], int] = lambda: 0,
        unfinished: Callable[[], int] | None = None,
        extra_slots: Callable[[], int] = lambda: 0,
    ) -> None:
        self.worker_id = worker_id
        self.queues = list(queues)
        self.slots = slots
        self.extra_slots = extra_slots  # slots beyond the threads: for async jobs, sized by the process
        self.submit = submit
        self.poll_interval = poll_interval
        self.listen = listen
        # Claims need no durable commit: a claim lost in a server crash leaves its jobs queued (see db.py).
        self.db = WorkerConnection(alias, role="producer", prepare=True, durable=False)
        self.stopping = threading.Event()
        self.durations = durations or Durations()
        self.waiting = waiting  # claimed jobs not started yet (in the executor's queue)
        # claimed jobs not finished running (waiting or executing); default: all not yet recorded
        self._outstanding = 0  # claimed jobs whose outcome is not recorded yet
        self.unfinished = unfinished if unfinished is not None else lambda: self._outstanding
        self._last_names: set[str] = set()
        self._expired: list[UUID] = []  # workflow jobs the claim expired, whose hand-off is not written yet
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._listening = False
        self.known_ids = known_ids
        self.budget = budget  # jobs it may still claim; None = no limit
        self.exhausted = False  # stopped because the budget is spent
        self._reconnected = False

    # -- called from other threads --------------------------------------------------------------------
    def wake(self) -> None:
        # BlockingIOError: the pipe is full, a wake-up is already pending. OSError: closed at exit, when a late
        # signal or job may still call this; nothing needs waking any more.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def slot_freed(self, n: int = 1) -> None:
        with self._lock:
            self._outstanding -= n
        self.wake()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    def limits(self) -> tuple[int, int]:
        """``(in_process, outstanding)``: how many claimed jobs may be unfinished (threads plus the prefetch
        that recent run times allow) and how many may await their recorded outcome. The second is larger by
        one prefetch, so the next claim overlaps with the writing of the last batch's outcomes; without
        prefetch both equal the threads, and a process never has more jobs ``running`` than threads."""
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
        with self._lock:
            return min(in_process - self.unfinished(), outstanding - self._outstanding)

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        pause = RECONNECT_START_S
        while not self.stopping.is_set():
            try:
                if self._reconnected:
                    self._release_strays()
                self._ensure_listening()
                timeout = self._claim_once()
                pause = RECONNECT_START_S
                if timeout is not None:
                    self._wait(timeout)
            except CONNECTION_ERRORS as exc:
                logger.warning("producer lost the database (%s); reconnecting in %.1f s", exc, pause)
                self.db.reset()
                self._listening = False
                self._reconnected = True
                self.stopping.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_S)
        # The wake-up pipe stays open: job threads still finishing call slot_freed(), and a closed
        # descriptor number could by then belong to another file (a database socket).
        self.db.close()

    def _release_strays(self) -> None:
        released = self.db.store.job_release_many(
            now=timezone.now(), worker_id=self.worker_id, keep_ids=set(self.known_ids())
        )
        self._reconnected = False
        if released:
            logger.warning("producer: handed back %d job(s) claimed while the connection broke", len(released))

    def _ensure_listening(self) -> None:
        if self.listen and not self._listening:
            conn = self.db.connection
            # Notifications that arrive while a query runs go to this handler instead of piling up in
            # psycopg's backlog; the wait below reads them straight off the socket.
            conn.add_notify_handler(lambda _n: None)
            self.db.store.queue_listen()
            self._listening = True

    def _claim_once(self) -> float | None:
        """Claim what fits; return how long to sleep, or None to claim again at once."""
        in_process, _ = self.limits()
        free = self.free
        if self.budget is not None:
            free = min(free, self.budget)
        if free <= 0:
            return self.poll_interval
        if free < self.slots and free * 2 < in_process and self.waiting() > 0:
            # Jobs claimed ahead are still waiting for a thread: claim again once more slots are free,
            # in one larger statement rather than many small ones.
            return self.poll_interval
        now = timezone.now()
        rows = self.db.store.job_claim_many(now=now, worker_id=self.worker_id, queues=self.queues, limit=free)
        if rows:
            self._last_names = {row["name"] for row in rows}
            self._expired += [row["id"] for row in rows if row["status"] != JobStatus.RUNNING and row["workflow"]]
        if self._expired:
            # An expired workflow step ends its workflow like a cancel does. Its own statement after the claim
            # (kept here and written again after a lost connection; idempotent for a cancelled job).
            self.db.store.job_handoff_many(now=now, ids=self._expired)
            self._expired = []
        for row in rows:
            if row["status"] != JobStatus.RUNNING:  # expired before it started: the claim cancelled it
                logger.info("job %s %s expired before it started", row["id"], row["name"])
                continue
            with self._lock:
                self._outstanding += 1
            if self.budget is not None:
                self.budget -= 1
            self.submit(row)
        if self.budget == 0:
            self.exhausted = True
            self.stopping.set()
            return None
        if len(rows) == free:
            return None  # we took all we could: there may be more waiting
        horizon = now + timedelta(seconds=self.poll_interval)
        next_run_at = self.db.store.job_next_run_at(queues=self.queues, horizon=horizon)
        if next_run_at is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (next_run_at - timezone.now()).total_seconds()))

    def _wait(self, timeout: float) -> None:
        watched = [self._wake_r]
        conn = self.db.connection if self._listening and self.free > 0 else None
        if conn is not None:
            watched.append(conn.fileno())
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if conn is not None and conn.fileno() in readable:
            pgconn = conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass  # a wake-up is all a notification means; the claim finds what is due
