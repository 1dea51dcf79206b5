"""The supervisor's metrics endpoint (``runworker --metrics-port``): one registry with the worker processes'
totals and the database gauges, served over HTTP by ``prometheus_client`` in a daemon thread.

The port is tried in the command, before anything starts (``MetricsServer.check``), so a port in use is a
clear error at start-up and never a half-started worker; the supervisor binds it for good (``start``) once it
has made its fork server and before it starts any thread or worker process, so no worker inherits the
listening socket. The database gauges are read on a connection of their own,
with a statement timeout, under the scrape's lock: a slow or absent database makes the scrape report
``djtasks_database_up 0``, never blocks the supervisor's loop (which does not touch it) nor any job.
"""

from __future__ import annotations

import logging
import socket
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
    """The endpoint of one runworker. ``check`` it in the command (before anything starts), then ``start`` it in
    the supervisor once its fork server exists (so no worker process inherits the listening socket or a thread)."""

    def __init__(self, port: int, address: str = "0.0.0.0", *, alias: str | None = None) -> None:
        self.port, self.address = port, address
        self.registry = CollectorRegistry(auto_describe=False)
        self.totals = WorkerTotals(processes=lambda: self.processes)
        self.processes = 0
        self._server: Any = None
        # Used only by DatabaseGauges, which reads under its lock: one scraping thread at a time. Opened at the
        # first scrape.
        self._db = WorkerConnection(
            alias or djtasks_settings.DATABASE, role="metrics", statement_timeout_ms=STATEMENT_TIMEOUT_MS
        )
        self.registry.register(self.totals)
        self.registry.register(DatabaseGauges(self._read, on_error=self._db.reset))

    @staticmethod
    def check(port: int, address: str = "0.0.0.0") -> None:
        """``MetricsPortError`` if ``address:port`` cannot be listened on now (in use, not permitted, no such
        address); the socket is closed again at once."""
        try:
            family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server will
                sock.bind(where)
                sock.listen()
        except OSError as exc:
            raise MetricsPortError(exc.errno, exc.strerror or str(exc)) from exc

    def start(self) -> None:
        """Listen and answer scrapes from a daemon thread; ``MetricsPortError`` if the port was taken since."""
        try:
            self._server, _thread = start_http_server(self.port, addr=self.address, registry=self.registry)
        except OSError as exc:
            raise MetricsPortError(exc.errno, exc.strerror or str(exc)) from exc
        self.port = self._server.server_port
        logger.info("metrics: serving Prometheus metrics on http://%s:%s/metrics", self.address, self.port)

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
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._db.close()
