"""Records job outcomes and start marks in batches: one fenced statement per batch, retried until the database
takes it.

An outcome is dropped only once written or once the fence says the attempt is no longer ours (the job was
rescued and re-queued meanwhile); while the database is away, outcomes wait here and are written on return.
Each batch also carries the start marks of jobs that have run for at least ``START_MARK_DELAY_S`` and not
finished (a job that finishes sooner costs no extra write: its outcome carries its start), so a rescuer that
finds the whole runworker dead charges an attempt to the jobs that had started and to no other. With no
outcome coming, the completer wakes on its own to write due marks while the ledger holds jobs.

Once outcomes are settled the ledger lets their jobs go and ``on_done(n)`` tells the producer that claimed
jobs left: the producer counts a job against its limits until then.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from uuid import UUID

import psycopg
from django.utils import timezone

from ..rows import ClaimedJob, Outcome, StartMark
from .db import CONNECTION_ERRORS, WorkerConnection
from .executor import failure_outcome
from .ledger import Ledger
from .waits import Backoff

logger = logging.getLogger("djtasks.worker")

BATCH_MAX = 500  # outcomes per statement
RETRY_START_S = 0.1  # first pause after a failed write; doubles up to RETRY_MAX_S
RETRY_MAX_S = 5.0
# A job running this long gets its start written on its own (one row update); a faster one's start rides
# with its outcome. Also the window in which a whole runworker's death re-runs a started job uncharged.
START_MARK_DELAY_S = 0.05

_WAKE = object()  # a queue item meaning only "look at the ledger"


class Completer(threading.Thread):
    def __init__(
        self,
        worker_id: UUID,
        alias: str | None = None,
        *,
        ledger: Ledger,
        on_done: Callable[[int], None] = lambda n: None,
        resubmit: Callable[[list[ClaimedJob]], None] = lambda jobs: None,
    ) -> None:
        super().__init__(name="djtasks-completer", daemon=True)
        self.worker_id = worker_id
        self.db = WorkerConnection(alias, role="completer", prepare=True)
        self.ledger = ledger
        self._queue: queue.SimpleQueue[Outcome | object | None] = queue.SimpleQueue()
        self.written = 0
        self.marks_written = 0
        self.on_done = on_done
        self.resubmit = resubmit  # jobs the ledger holds again once settled (claimed anew while running)
        self.fenced = 0
        self.wakes = False  # some outcomes carry "notify": a queue to wake once they are written

    def put(self, outcome: Outcome) -> None:
        """Queue an outcome (its job is ``finished`` in the ledger already)."""
        self._queue.put(outcome)

    def wake(self) -> None:
        """The ledger got jobs after being empty: start watching for due start marks."""
        self._queue.put(_WAKE)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every outcome put so far is written (or fenced off); False on timeout."""
        return self.ledger.wait(lambda ledger: ledger.finished == 0, timeout)

    def stop(self) -> None:
        self._queue.put(None)

    def _timeout(self) -> float | None:
        """How long to wait for an outcome before writing due start marks anyway; None: nothing to watch."""
        oldest = self.ledger.next_mark_due()
        if oldest is not None:
            return max(0.0, oldest + START_MARK_DELAY_S - time.monotonic())
        return START_MARK_DELAY_S if self.ledger.outstanding else None

    def run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self._timeout())
            except queue.Empty:
                first = _WAKE
            if first is None:
                break
            batch: list[Outcome] = [] if first is _WAKE else [first]  # type: ignore[list-item]
            while len(batch) < BATCH_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if item is not _WAKE:
                    batch.append(item)  # type: ignore[arg-type]
            marks = self.ledger.take_marks(time.monotonic() - START_MARK_DELAY_S)
            if batch or marks:
                self._write(batch, marks)
        self.db.close()

    def _wake_limited(self, batch: list[Outcome]) -> None:
        """NOTIFY the queues whose limit a finished job freed a slot of (``outcome["notify"]``, set by the
        worker process for limited queues and job names only), so a worker waiting on the limit claims now."""
        queues = {o["notify"] for o in batch if o.get("notify")}
        if not queues:
            return
        try:
            self.db.store.queue_notify_many(queues=sorted(queues))
        except psycopg.Error as exc:  # the waiting workers' poll interval is the fallback
            logger.warning("could not wake the workers of %s (%s)", sorted(queues), exc)
            self.db.reset()

    def _finish(self, batch: list[Outcome], marks: list[StartMark], *, replacement: bool = False) -> set[UUID]:
        """Write a batch, retrying while the database is away. An outcome the database refuses for another
        reason (it should not happen: results are JSON already) is written alone, and if it still fails the
        job is failed with that error, so one bad outcome never blocks the others or stays unrecorded."""
        backoff = Backoff(RETRY_START_S, RETRY_MAX_S)
        while True:
            try:
                return self.db.store.job_finish_many(worker_id=self.worker_id, outcomes=batch, marks=marks)
            except CONNECTION_ERRORS as exc:
                pause = backoff.next()
                logger.warning("recording %d outcomes failed (%s); retrying in %.1f s", len(batch), exc, pause)
                self.db.reset()
                time.sleep(pause)
            except psycopg.Error as exc:
                self.db.reset()
                if marks:  # try the outcomes without them; a start mark that keeps failing is only a lost hint
                    if not batch:
                        logger.exception("start marks could not be recorded")
                        return set()
                    self._finish([], marks)
                    return set().union(*(self._finish([outcome], []) for outcome in batch))
                if len(batch) > 1:
                    return set().union(*(self._finish([outcome], []) for outcome in batch))
                logger.exception("job %s: its outcome could not be recorded", batch[0]["id"])
                if replacement:
                    return set()  # cannot even fail it: shutdown hands it back to the queue
                outcome = failure_outcome(batch[0], exc, timezone.now(), retry_in=None)
                outcome["started_at"] = batch[0]["started_at"]
                if "notify" in batch[0]:
                    outcome["notify"] = batch[0]["notify"]
                return self._finish([outcome], [], replacement=True)

    def _write(self, batch: list[Outcome], marks: list[StartMark]) -> None:
        written = self._finish(batch, marks)
        self.written += len(written)
        self.marks_written += len(marks)
        lost = [] if len(written) == len(batch) else [o["id"] for o in batch if o["id"] not in written]
        if lost:
            self.fenced += len(lost)
            logger.warning(
                "outcomes of %d job(s) no longer owned by this worker were not recorded: %s", len(lost), lost
            )
        if batch:
            again = self.ledger.recorded((o["id"] for o in batch), written)
            if again:
                self.resubmit(again)
            self.on_done(len(batch))
        if self.wakes and batch:  # only once a job of a limited queue ran here: the plain path does no extra work
            self._wake_limited(batch)  # after on_done: this process's own producer need not wait for it
