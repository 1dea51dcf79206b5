"""Keeps this worker process's ``djtasks_worker`` row fresh from its own thread and connection, so a
long job (or a busy producer) never delays the proof of life."""

from __future__ import annotations

import logging
import threading
from uuid import UUID

from django.utils import timezone

from .db import CONNECTION_ERRORS, WorkerConnection

logger = logging.getLogger("djtasks.worker")


class Heartbeat(threading.Thread):
    def __init__(self, worker_id: UUID, interval: float, alias: str | None = None) -> None:
        super().__init__(name="djtasks-heartbeat", daemon=True)
        self.worker_id = worker_id
        self.interval = interval
        self.db = WorkerConnection(alias, role="heartbeat")
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def beat(self) -> bool:
        """One heartbeat; False if the row is gone (this worker was declared dead)."""
        return self.db.store.worker_heartbeat(now=timezone.now(), id=self.worker_id)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                if not self.beat():
                    logger.error("worker %s has no worker row any more (declared dead?)", self.worker_id)
            except CONNECTION_ERRORS as exc:
                logger.warning("heartbeat failed: %s", exc)
                self.db.reset()
        self.db.close()
