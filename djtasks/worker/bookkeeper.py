"""The supervisor's database thread: records what happened to the jobs of worker processes that ended, and
looks for running jobs whose cancel asks for their process to be killed.

It keeps all database waits off the supervisor's loop, which must go on enforcing time limits and
restarting processes while the database is away. Each task is retried until the database takes it; every
task is idempotent (fenced by worker id and attempt), so a retry after a lost answer changes nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from ..rows import TerminateRequest
from ..store import Store
from .db import CONNECTION_ERRORS, WorkerConnection
from .waits import Backoff

logger = logging.getLogger("djtasks.supervisor")

TERMINATE_POLL_S = 0.5  # how often to look for cancel(terminate=True) requests of our processes

Task = Callable[[Store], Any]


class Bookkeeper(threading.Thread):
    def __init__(self, alias: str | None = None, *, wake: Callable[[], None] = lambda: None) -> None:
        super().__init__(name="djtasks-bookkeeper", daemon=True)
        self.db = WorkerConnection(alias, role="supervisor")
        self.wake = wake
        self.worker_ids: tuple[UUID, ...] = ()  # replaced (never mutated) by the supervisor
        self.terminate_requests: queue.Queue[TerminateRequest] = queue.Queue()
        self._tasks: queue.Queue[tuple[str, Task | None] | None] = queue.Queue()
        self._unfinished = 0
        self._cond = threading.Condition()
        self._giving_up = threading.Event()

    def submit(self, description: str, task: Task) -> None:
        with self._cond:
            self._unfinished += 1
        self._tasks.put((description, task))

    def drain(self, timeout: float) -> bool:
        """Wait for submitted tasks; past ``timeout`` give up on them (the rescuer will act later)."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._unfinished == 0, timeout)
        if not done:
            logger.error("supervisor: database unavailable; leaving %d record(s) to the rescuer", self._unfinished)
        self._giving_up.set()
        self._tasks.put(None)
        return done

    def run(self) -> None:
        next_poll = time.monotonic()
        while True:
            try:
                item = self._tasks.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                item = ("terminate poll", None)
            if item is None:
                break
            description, task = item
            if task is not None:
                self._run_task(description, task)
                with self._cond:
                    self._unfinished -= 1
                    self._cond.notify_all()
            if time.monotonic() >= next_poll:
                self._poll_terminate_requests()
                next_poll = time.monotonic() + TERMINATE_POLL_S
        self.db.close()

    def _run_task(self, description: str, task: Task) -> None:
        backoff = Backoff()
        while not self._giving_up.is_set():
            try:
                task(self.db.store)
                return
            except CONNECTION_ERRORS as exc:
                pause = backoff.next()
                logger.warning("supervisor: %s failed (%s); retrying in %.1f s", description, exc, pause)
                self.db.reset()
                self._giving_up.wait(pause)
            except Exception:
                logger.exception("supervisor: %s failed", description)
                self.db.reset()
                return

    def _poll_terminate_requests(self) -> None:
        worker_ids = self.worker_ids
        if not worker_ids:
            return
        try:
            rows = self.db.store.job_terminate_requested_many(worker_ids=worker_ids)
        except CONNECTION_ERRORS:
            self.db.reset()
            return
        for row in rows:
            self.terminate_requests.put(row)
        if rows:
            self.wake()
