"""The supervisor's running totals of what its worker processes counted (``worker/metering.py``), exposed as
Prometheus counters and histograms.

Each worker process ships deltas; the totals only ever add them, so counts outlive the process that made them
(a recycled, crashed or killed process's shipped counts stay) and the counters never go down while the
supervisor runs: one scrape target per ``runworker``, however many processes it has had.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..worker.metering import (
    CLAIM_LATENCY_BOUNDS_S,
    CLAIM_SIZE_BOUNDS,
    DURATION_BOUNDS_S,
    Histogram,
    MeterDelta,
)


def _buckets(bounds: tuple[float, ...], histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    found: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip((*bounds, float("inf")), histogram.counts, strict=True):
        running += n
        found.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
    return found


class WorkerTotals(Collector):
    """Thread-safe totals: ``add`` from the supervisor's loop, ``collect`` from a scrape's thread."""

    def __init__(self, processes: Callable[[], int] | None = None) -> None:
        """``processes()``: how many worker processes run now (for ``djtasks_worker_processes``)."""
        self._lock = threading.Lock()
        self._totals = MeterDelta()
        self._lost: dict[str, int] = {}  # reason -> attempts ended by the supervisor
        self._processes = processes

    def add(self, delta: MeterDelta) -> None:
        with self._lock:
            self._totals.add(delta)

    def lost(self, reason: str, attempts: int) -> None:
        """Attempts the supervisor ended or found ended (their process was killed or died): ``reason`` is
        ``time_limit``, ``terminated`` or ``process_died``."""
        with self._lock:
            self._lost[reason] = self._lost.get(reason, 0) + attempts

    def snapshot(self) -> MeterDelta:
        """A copy of the totals (for tests and the collector)."""
        copy = MeterDelta()
        with self._lock:
            copy.add(self._totals)
        return copy

    def collect(self) -> Iterator[Metric]:
        totals = self.snapshot()
        started = CounterMetricFamily(
            "djtasks_jobs_started", "Jobs whose function started, by queue and job name.", labels=["queue", "name"]
        )
        finished = CounterMetricFamily(
            "djtasks_jobs_finished",
            "Job attempts whose function returned or raised, by queue, job name and outcome "
            "(succeeded, failed, retried, cancelled).",
            labels=["queue", "name", "outcome"],
        )
        durations = HistogramMetricFamily(
            "djtasks_job_duration_seconds",
            "How long job functions ran, by queue and job name.",
            labels=["queue", "name"],
        )
        for (queue, name), counts in sorted(totals.jobs.items()):
            started.add_metric([queue, name], counts.started)
            for outcome, n in sorted(counts.outcomes.items()):
                finished.add_metric([queue, name, outcome], n)
            if counts.durations.count:
                durations.add_metric(
                    [queue, name], _buckets(DURATION_BOUNDS_S, counts.durations), counts.durations.total
                )
        yield started
        yield finished
        yield durations
        sizes = HistogramMetricFamily("djtasks_claim_batch_size", "Jobs taken per claim statement (0: none was due).")
        sizes.add_metric([], _buckets(CLAIM_SIZE_BOUNDS, totals.claim_sizes), totals.claim_sizes.total)
        yield sizes
        latency = HistogramMetricFamily("djtasks_claim_duration_seconds", "How long claim statements took.")
        latency.add_metric([], _buckets(CLAIM_LATENCY_BOUNDS_S, totals.claim_latency), totals.claim_latency.total)
        yield latency
        lost = CounterMetricFamily(
            "djtasks_attempts_lost",
            "Attempts whose end no worker process reported: its supervisor killed it (time_limit, terminated) "
            "or it died (process_died); they are recorded in the database and not in djtasks_jobs_finished.",
            labels=["reason"],
        )
        with self._lock:
            lost_now = dict(self._lost)
        for reason in ("time_limit", "terminated", "process_died"):
            lost.add_metric([reason], lost_now.get(reason, 0))
        yield lost
        if self._processes is not None:
            yield GaugeMetricFamily(
                "djtasks_worker_processes", "Worker processes this runworker runs now.", value=self._processes()
            )
