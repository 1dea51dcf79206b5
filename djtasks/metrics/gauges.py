"""The database-level gauges as a Prometheus collector, read at scrape time and cached for a few seconds.

Shared by ``runworker --metrics-port`` (on a connection of its own) and the Django view (on Django's
connection). A snapshot that fails (the database is away, a statement times out) is logged and reported as
``djtasks_database_up 0`` with no other database gauge; it never raises into the scrape, so the worker
counters are still served and the worker never notices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .database import DatabaseSnapshot

logger = logging.getLogger("djtasks.metrics")

CACHE_S = 5.0  # a snapshot serves scrapes for this long (several Prometheus servers, or a short interval)


class DatabaseGauges(Collector):
    """Collects the gauges of ``reader()`` (a ``DatabaseSnapshot``), at most once per ``cache_s``; when it
    raises, ``on_error()`` runs (e.g. to drop a broken connection) and the scrape says the database is down."""

    def __init__(
        self,
        reader: Callable[[], DatabaseSnapshot],
        *,
        on_error: Callable[[], None] | None = None,
        cache_s: float | None = None,
    ) -> None:
        """``cache_s``: how long a snapshot serves scrapes (default ``CACHE_S``)."""
        self._reader = reader
        self._on_error = on_error
        self._cache_s = CACHE_S if cache_s is None else cache_s
        self._lock = threading.Lock()  # one snapshot at a time; concurrent scrapes share it
        self._taken = -float("inf")  # monotonic time of the last attempt
        self._snapshot: DatabaseSnapshot | None = None
        self._seconds = 0.0

    def snapshot(self) -> tuple[DatabaseSnapshot | None, float]:
        """The cached snapshot (``None`` if the last attempt failed) and how long taking it took."""
        with self._lock:
            if time.monotonic() - self._taken >= self._cache_s:
                began = time.monotonic()
                try:
                    self._snapshot = self._reader()
                except Exception as exc:  # noqa: BLE001 - a failing scrape must not disturb anything else
                    logger.warning("metrics: cannot read the database gauges (%s)", exc)
                    self._snapshot = None
                    if self._on_error is not None:
                        self._on_error()
                self._seconds = time.monotonic() - began
                self._taken = time.monotonic()
            return self._snapshot, self._seconds

    def collect(self) -> Iterator[Metric]:
        snapshot, seconds = self.snapshot()
        yield GaugeMetricFamily(
            "djtasks_database_up",
            "1 if the last read of the database gauges worked, else 0.",
            value=int(snapshot is not None),
        )
        yield GaugeMetricFamily(
            "djtasks_database_scrape_duration_seconds", "How long the last read of the database gauges took.", seconds
        )
        if snapshot is not None:
            yield from families(snapshot)


def families(snapshot: DatabaseSnapshot) -> Iterator[Metric]:
    """The gauges of one snapshot (metric names and meanings: ``docs/metrics.md``)."""
    jobs = GaugeMetricFamily(
        "djtasks_jobs",
        "Active jobs now, exact, by queue and status: queued (due), scheduled (queued, due later), waiting "
        "(workflow step), claimed (held by a worker, not started), running.",
        labels=["queue", "status"],
    )
    for (queue, status), n in sorted(snapshot.jobs.items()):
        jobs.add_metric([queue, status], n)
    yield jobs
    finished = GaugeMetricFamily(
        "djtasks_jobs_finished_estimate",
        "Finished jobs kept in the table, estimated from the planner's statistics, by queue and status.",
        labels=["queue", "status"],
    )
    for (queue, status), n in sorted(snapshot.finished_estimate.items()):
        finished.add_metric([queue, status], n)
    yield finished
    oldest = GaugeMetricFamily(
        "djtasks_queue_oldest_waiting_seconds",
        "Age of the queue's oldest due job still waiting for a worker (0 when none waits).",
        labels=["queue"],
    )
    for queue, seconds in sorted(snapshot.oldest_wait_s.items()):
        oldest.add_metric([queue], seconds)
    yield oldest
    yield GaugeMetricFamily(
        "djtasks_workers_alive", "Worker processes with a recent heartbeat (all hosts).", snapshot.workers_alive
    )
    yield GaugeMetricFamily(
        "djtasks_workers_dead",
        "Worker rows whose heartbeat is older than WORKER_TIMEOUT, not rescued yet.",
        snapshot.workers_dead,
    )
    yield GaugeMetricFamily(
        "djtasks_schedule_lag_seconds",
        "How late the most overdue enabled periodic schedule is (0 when none is overdue).",
        snapshot.schedule_lag_s,
    )
