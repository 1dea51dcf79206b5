"""The beat loop: sync schedules once, then fire due ticks until stopped.

It sleeps until the earliest schedule is due, but never longer than the reload interval, so schedules edited
anywhere are picked up within it; with ``LISTEN`` it also wakes at once when the admin or ``Schedule.save()``
saves a schedule (they ``NOTIFY`` ``djtasks_schedule``). Each pass first plans rows written past ``save()``
(``Scheduler.plan_unplanned``), so a ``QuerySet.update`` or ``bulk_create`` applies within the interval. ``runbeat`` runs it in the main thread; ``runworker --beat`` runs it
in a thread of the supervisor, away from the worker processes' hot path.
"""

from __future__ import annotations

import logging
import os
import threading

from django.utils import timezone

from .maintenance.scheduler import Scheduler
from .store import Store
from .worker.db import CONNECTION_ERRORS, WorkerConnection
from .worker.listener import Listener
from .worker.waits import Backoff, WakePipe, wait_for_wake

logger = logging.getLogger("djtasks.beat")


class Beat:
    """One scheduler loop on its own database connection. ``stop()`` may be called from any thread."""

    def __init__(self, *, alias: str | None = None, listen: bool = True, reload_interval: float = 1.0) -> None:
        self.alias = alias
        self.listen = listen
        self.reload_interval = reload_interval
        self.stopping = threading.Event()
        self.synced = False
        self._db: WorkerConnection | None = None
        self._listener: Listener | None = None
        self._wake = WakePipe()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.wake()

    def run(self) -> None:
        """Loop until ``stop()``; database outages are waited out with backoff."""
        logger.info("beat: started (pid %s)", os.getpid())
        backoff = Backoff()
        try:
            while not self.stopping.is_set():
                try:
                    timeout = self._pass()
                    backoff.reset()
                    if timeout > 0:
                        if self._listener is not None:
                            self._listener.wait(self._wake, timeout)
                        else:
                            wait_for_wake(self._wake, None, timeout)
                except CONNECTION_ERRORS as exc:
                    pause = backoff.next()
                    logger.warning("beat lost the database (%s); reconnecting in %.1f s", exc, pause)
                    self._close()
                    self.stopping.wait(pause)
        finally:
            self._close()
            # Not closed: stop() may still be called from another thread, and a closed descriptor number
            # could by then belong to another file.
            logger.info("beat: stopped")

    def _pass(self) -> float:
        """Sync (first time), fire what is due, and return how long to sleep."""
        if self._db is None:
            # A new connection object each time: its store is bound to the connection it was made with.
            self._db = WorkerConnection(self.alias, role="beat")
            # LISTEN here, on a direct connection of its own (LISTEN_DATABASE), or nowhere (see listener.py).
            self._listener = Listener(self._db, enabled=self.listen, subscribe=Store.schedule_listen, role="beat")
        scheduler = Scheduler.for_connection(self._db)
        if not self.synced:
            synced = scheduler.sync(timezone.now())
            self.synced = True
            logger.info(
                "beat: synced schedules (%d new, %d updated, %d disabled)",
                len(synced.created),
                len(synced.updated),
                len(synced.orphaned),
            )
        if self._listener is not None:
            self._listener.ensure()
        result = scheduler.run_once(timezone.now())
        timeout = self.reload_interval
        if result.next_fire_at is not None:
            timeout = min(timeout, (result.next_fire_at - timezone.now()).total_seconds())
        if result.failed:  # do not spin on a schedule that keeps failing
            timeout = self.reload_interval
        return max(0.0, timeout)

    def _close(self) -> None:
        db, self._db = self._db, None
        listener, self._listener = self._listener, None
        if db is not None:
            db.close()
        if listener is not None:
            listener.close()


def run_in_thread(
    *, alias: str | None = None, listen: bool = True, reload_interval: float = 1.0
) -> tuple[Beat, threading.Thread]:
    """Start a ``Beat`` in a daemon thread (``runworker --beat``); stop it with ``beat.stop(); thread.join()``."""
    beat = Beat(alias=alias, listen=listen, reload_interval=reload_interval)

    def target() -> None:
        try:
            beat.run()
        except Exception:  # a thread's exception would vanish; say it loudly
            logger.exception("beat: the scheduler thread died")

    thread = threading.Thread(target=target, name="djtasks-beat", daemon=True)
    thread.start()
    return beat, thread
