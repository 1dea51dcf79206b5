"""Keeps this worker process's ``djtasks_worker`` row fresh from its own thread and connection, so a
long job (or a busy producer) never delays the proof of life.

A CPU-bound job does not starve this thread: CPython makes a thread that holds the GIL drop it every
``sys.getswitchinterval()`` seconds (5 ms by default) when another thread waits for it, and the heartbeat
thread sleeps (without the GIL) between beats. The worker process keeps the switch interval small (see
``cap_switch_interval``). What can starve it is C code that holds the GIL for seconds without checking
(a long ``re`` match, some C extensions): such a job should run with a ``time_limit``.

The heartbeat also watches the parent: a worker process whose supervisor died (reparented) stops on its own.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from uuid import UUID

from django.utils import timezone

from .db import CONNECTION_ERRORS, WorkerConnection

logger = logging.getLogger("djtasks.worker")

MAX_SWITCH_INTERVAL_S = 0.005  # CPython's default; larger values let a CPU-bound job delay the heartbeat


def cap_switch_interval() -> float:
    """Make sure a CPU-bound thread hands the GIL over at least every ``MAX_SWITCH_INTERVAL_S``."""
    if sys.getswitchinterval() > MAX_SWITCH_INTERVAL_S:
        logger.warning(
            "sys.getswitchinterval() is %.3f s; lowering it to %.3f s so jobs cannot starve the heartbeat",
            sys.getswitchinterval(),
            MAX_SWITCH_INTERVAL_S,
        )
        sys.setswitchinterval(MAX_SWITCH_INTERVAL_S)
    return sys.getswitchinterval()


class Heartbeat(threading.Thread):
    def __init__(
        self,
        worker_id: UUID,
        interval: float,
        alias: str | None = None,
        *,
        register: Callable[[WorkerConnection], None] | None = None,
        parent_pid: int | None = None,
        on_orphaned: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="djtasks-heartbeat", daemon=True)
        self.worker_id = worker_id
        self.interval = interval
        self.db = WorkerConnection(alias, role="heartbeat")
        self.register = register
        self.parent_pid = parent_pid
        self.on_orphaned = on_orphaned
        self.beats = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def beat(self) -> bool:
        """One heartbeat; False if the row is gone (this worker was declared dead)."""
        alive = self.db.store.worker_heartbeat(now=timezone.now(), id=self.worker_id)
        self.beats += 1
        return alive

    def _check_parent(self) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            logger.error("worker %s: supervisor (pid %s) is gone; stopping", self.worker_id, self.parent_pid)
            self.parent_pid = None
            if self.on_orphaned is not None:
                self.on_orphaned()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._check_parent()
            try:
                if not self.beat():
                    # Declared dead while alive (a pause or an outage longer than WORKER_TIMEOUT): the jobs it
                    # ran were rescued and their late results will be fenced off. Register again, so the jobs
                    # it claims from now on belong to a live worker.
                    logger.error(
                        "worker %s had no worker row any more (declared dead); registering again", self.worker_id
                    )
                    if self.register is not None:
                        self.register(self.db)
            except CONNECTION_ERRORS as exc:
                logger.warning("heartbeat failed: %s", exc)
                self.db.reset()
        self.db.close()
