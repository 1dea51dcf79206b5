"""Records job outcomes in batches: one fenced statement per batch, retried until the database takes it.

An outcome is dropped only once written or once the fence says the attempt is no longer ours (the job was
rescued and re-queued meanwhile); while the database is away, outcomes wait here and are written on return.
``on_done(n)`` is called once ``n`` outcomes are settled: the producer frees their slots only then, so a
worker process never has more jobs ``running`` in the database than it has threads (and a process that
dies loses at most that many attempts).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from uuid import UUID

import psycopg

from ..rows import Outcome
from .db import CONNECTION_ERRORS, WorkerConnection

logger = logging.getLogger("djtasks.worker")

BATCH_MAX = 500  # outcomes per statement
RETRY_START_S = 0.1  # first pause after a failed write; doubles up to RETRY_MAX_S
RETRY_MAX_S = 5.0


class Completer(threading.Thread):
    def __init__(
        self, worker_id: UUID, alias: str | None = None, *, on_done: Callable[[int], None] = lambda n: None
    ) -> None:
        super().__init__(name="djtasks-completer", daemon=True)
        self.worker_id = worker_id
        self.db = WorkerConnection(alias, role="completer", prepare=True)
        self._queue: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._pending: set[UUID] = set()  # ids of outcomes put and not yet written (or fenced off)
        self._lock = threading.Condition()
        self.written = 0
        self.on_done = on_done
        self.fenced = 0

    def put(self, outcome: Outcome) -> None:
        with self._lock:
            self._pending.add(outcome["id"])
        self._queue.put(outcome)

    def pending_ids(self) -> set[UUID]:
        """Jobs whose outcome waits to be written: still ``running`` in the database, but not lost."""
        with self._lock:
            return set(self._pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every outcome put so far is written (or fenced off); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout)

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        self.db.close()

    def _finish(self, batch: list[Outcome], *, replacement: bool = False) -> set[UUID]:
        """Write a batch, retrying while the database is away. An outcome the database refuses for another
        reason (it should not happen: results are JSON already) is written alone, and if it still fails the
        job is failed with that error, so one bad outcome never blocks the others or stays unrecorded."""
        pause = RETRY_START_S
        while True:
            try:
                return self.db.store.job_finish_many(worker_id=self.worker_id, outcomes=batch)
            except CONNECTION_ERRORS as exc:
                logger.warning("recording %d outcomes failed (%s); retrying in %.1f s", len(batch), exc, pause)
                self.db.reset()
                threading.Event().wait(pause)
                pause = min(pause * 2, RETRY_MAX_S)
            except psycopg.Error as exc:
                self.db.reset()
                if len(batch) > 1:
                    return set().union(*(self._finish([outcome]) for outcome in batch))
                logger.exception("job %s: its outcome could not be recorded", batch[0]["id"])
                if replacement:
                    return set()  # cannot even fail it: shutdown hands it back to the queue
                from django.utils import timezone

                from .executor import failure_outcome

                outcome = failure_outcome(batch[0], exc, timezone.now(), retry_in=None)
                return self._finish([outcome], replacement=True)

    def _write(self, batch: list[Outcome]) -> None:
        written = self._finish(batch)
        self.written += len(written)
        lost = [o["id"] for o in batch if o["id"] not in written]
        if lost:
            self.fenced += len(lost)
            logger.warning(
                "outcomes of %d job(s) no longer owned by this worker were not recorded: %s", len(lost), lost
            )
        with self._lock:
            self._pending.difference_update(o["id"] for o in batch)
            self._lock.notify_all()
        self.on_done(len(batch))
