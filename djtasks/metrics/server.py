"""The supervisor's metrics endpoint (``runworker --metrics-port``): one registry with the worker processes'
totals and the database gauges, served over HTTP by ``prometheus_client`` in a daemon thread.

The port is bound before any worker process starts (``MetricsServer.bind``), so a port in use is a clear
error at start-up and never a half-started worker. The database gauges are read on a connection of their own,
with a statement timeout, under the scrape's lock: a slow or absent database makes the scrape report
``djtasks_database_up 0``, never blocks the supervisor's loop (which does not touch it) nor any job.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.utils import timezone
from prometheus_client import CollectorRegistry, start_http_server

from ..conf import djtasks_settings
from ..worker.db import WorkerConnection
from ..worker.metering import MeterDelta
from .database import DatabaseSnapshot, read
from .gauges import DatabaseGauges
from .workers import WorkerTotals

logger = logging.getLogger("djtasks.metrics")

STATEMENT_TIMEOUT_MS = 5000  # a scrape's database read gives up after this


class MetricsPortError(OSError):
    """The metrics port cannot be listened on (in use, not permitted, a bad address)."""


class MetricsServer:
    def __init__(self, server: Any, thread: threading.Thread, registry: CollectorRegistry, alias: str) -> None:
        self._server, self._thread, self.registry = server, thread, registry
        self.port: int = server.server_port
        self.totals = WorkerTotals(processes=lambda: self.processes)
        self.processes = 0
        # Used only by DatabaseGauges, which reads under its lock: one scraping thread at a time.
        self._db = WorkerConnection(alias, role="metrics", statement_timeout_ms=STATEMENT_TIMEOUT_MS)
        registry.register(self.totals)
        registry.register(DatabaseGauges(self._read, on_error=self._db.reset))

    @classmethod
    def bind(cls, port: int, address: str = "0.0.0.0", *, alias: str | None = None) -> MetricsServer:
        """Listen on ``address:port`` now (scrapes are answered from then on); ``MetricsPortError`` if it cannot."""
        registry = CollectorRegistry(auto_describe=False)
        try:
            server, thread = start_http_server(port, addr=address, registry=registry)
        except OSError as exc:
            raise MetricsPortError(exc.errno, exc.strerror or str(exc)) from exc
        logger.info("metrics: serving Prometheus metrics on http://%s:%s/metrics", address, server.server_port)
        return cls(server, thread, registry, alias or djtasks_settings.DATABASE)

    def _read(self) -> DatabaseSnapshot:
        return read(self._db.store, now=timezone.now(), worker_timeout=djtasks_settings.WORKER_TIMEOUT)

    def add(self, delta: MeterDelta) -> None:
        """A worker process's shipment (``Child.on_metrics``)."""
        self.totals.add(delta)

    def lost(self, reason: str, attempts: int) -> None:
        """Attempts ended by a kill or a death (``WorkerTotals.lost``); from the supervisor's bookkeeper thread."""
        if attempts:
            self.totals.lost(reason, attempts)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._db.close()
