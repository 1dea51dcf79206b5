"""Runs maintenance services in a thread of the supervisor, apart from the hot path.

Each service (``name``, ``interval``, ``run_once(now)``) runs every ``interval`` seconds, and only while this
process holds the service's Postgres advisory lock: one rescuer at a time across all hosts. The lock is
transaction-scoped (``pg_try_advisory_xact_lock``): a run is one transaction on this thread's own connection
that takes the lock first, and its commit or rollback releases it, as does the server if the connection dies.
Nothing rests on session state, so it works the same through a transaction-mode pooler such as PgBouncer,
where a session lock would stay on whichever server connection the pooler lent, for good if its client died.

A service whose work spans several short transactions (the pruner's batches) says so with ``run_gated(now,
gate)``: each of its transactions is ``with gate() as held:``, and it stops when ``held`` is false (another
process took over). A failing service is logged and tried again next interval; it never stops the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from django.utils import timezone

from ..worker.db import CONNECTION_ERRORS, WorkerConnection
from ..worker.listener import warn_about_poolers
from ..worker.waits import Backoff

logger = logging.getLogger("djtasks.maintenance")

JITTER = 0.1  # +-10% on each interval, so supervisors started together do not contend in lock-step
AGAIN_S = 1.0  # a run that stopped with work left (``complete`` false: the pruner's batch budget) goes on this soon


def next_due(now: float, interval: float, result: Any, rand: float) -> float:
    """When a service runs next (monotonic seconds), after a run that returned ``result`` at ``now``: in about
    ``interval`` (``rand`` in 0..1 places it within the jitter), or in ``AGAIN_S`` if the run left work undone,
    so a backlog is worked off at the rate the service can go rather than one budget per interval."""
    if getattr(result, "complete", True) is False:
        return now + min(AGAIN_S, interval)
    return now + interval * (1 - JITTER + 2 * JITTER * rand)


class Service(Protocol):
    name: str
    interval: float

    def run_once(self, now: Any) -> Any: ...


Gate = Callable[[], AbstractContextManager[bool]]  # a transaction holding a service's lock; yields if it does


class MaintenanceRunner(threading.Thread):
    def __init__(self, alias: str | None = None) -> None:
        super().__init__(name="djtasks-maintenance", daemon=True)
        self.db = WorkerConnection(alias, role="maintenance")
        self.store = self.db.store
        self.services: list[Service] = []
        self._stop_event = threading.Event()
        self.runs: dict[str, int] = {}

    def add(self, service: Service) -> None:
        self.services.append(service)

    def stop(self) -> None:
        self._stop_event.set()

    def gate(self, name: str) -> Gate:
        """Transactions holding service ``name``'s lock, for ``run_gated`` services."""
        return lambda: self.store.maintenance_locked(name=name)

    def run_service(self, service: Service) -> Any:
        """Run ``service`` once if its advisory lock is free; returns its result, or None when skipped."""
        run_gated = getattr(service, "run_gated", None)
        if run_gated is not None:
            result = run_gated(timezone.now(), self.gate(service.name))
        else:
            with self.store.maintenance_locked(name=service.name) as held:
                result = service.run_once(timezone.now()) if held else None
        if result is not None:
            self.runs[service.name] = self.runs.get(service.name, 0) + 1
        return result

    def run(self) -> None:
        # The supervisor's first thread to reach the database, started once its fork server exists (which
        # must be made while no other thread runs): it looks at the connections for poolers first, once.
        with contextlib.suppress(Exception):  # a warning at most; never a reason to stop maintenance
            warn_about_poolers()
        due = {service.name: time.monotonic() + service.interval * random.random() for service in self.services}
        backoff = Backoff()  # after losing the database a service is tried again sooner than its interval
        while not self._stop_event.is_set():
            now = time.monotonic()
            for service in self.services:
                if due[service.name] > now or self._stop_event.is_set():
                    continue
                due[service.name] = next_due(now, service.interval, None, random.random())
                try:
                    result = self.run_service(service)
                    due[service.name] = next_due(now, service.interval, result, random.random())
                    backoff.reset()
                except CONNECTION_ERRORS as exc:
                    logger.warning("maintenance %s: database unavailable (%s)", service.name, exc)
                    self.db.reset()
                    due[service.name] = now + min(service.interval, backoff.next())
                except Exception:
                    logger.exception("maintenance %s failed; trying again in %.1f s", service.name, service.interval)
                    self.db.reset()  # the connection may be mid-transaction: start clean
            if self.services:
                self._stop_event.wait(max(0.0, min(due.values()) - time.monotonic()))
            else:
                self._stop_event.wait()
        self.db.close()
