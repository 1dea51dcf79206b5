"""A worker process's job and claim counts for ``runworker --metrics-port``, shipped to its supervisor.

Only a process started with metrics on has a ``JobMeter`` (``WorkerProcess.meter`` is ``None`` otherwise, and
every hook is one ``is not None`` check): without ``--metrics-port`` the worker pays nothing per job.

With it on, each job appends two small tuples to deques (no lock, no Prometheus object is touched in the
worker process, and ``prometheus_client`` is never imported here), and a shipper thread adds them up and
sends the sums since the last shipment, as a ``MeterDelta``, on the pipe the process already reports on,
about once a second and once more when the process stops. The supervisor adds each delta to its running totals
(``djtasks.metrics.workers``), so:

- counts already shipped survive the process (a crash, a recycle, a time-limit kill): they live in the
  supervisor;
- nothing is counted twice: each event is taken off its deque once, into one delta, sent once;
- a process that dies suddenly loses at most its last second of counts (the database stays the record of
  what ran; its outcomes are counted by whoever records them, see ``djtasks.metrics.workers``).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("djtasks.worker")

SHIP_INTERVAL_S = 1.0  # how often a worker process ships its counts to the supervisor

# Histogram upper bounds (the +Inf bucket is implied). Job durations span milliseconds to an hour.
DURATION_BOUNDS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
CLAIM_LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
CLAIM_SIZE_BOUNDS: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# Outcome labels, from the outcome's status: a failed attempt that will run again is "retried".
OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "queued": "retried", "cancelled": "cancelled"}


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (``counts[i]``: observations ``<= bounds[i]`` and above the bound before; the last one
    is ``+Inf``) and their sum. Not cumulative, so deltas add bucket by bucket."""

    counts: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls([0] * (len(bounds) + 1))

    def observe(self, bounds: tuple[float, ...], value: float) -> None:
        self.counts[bisect.bisect_left(bounds, value)] += 1
        self.total += value

    def add(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(slots=True)
class JobCounts:
    """One job name's counts in one queue."""

    started: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome label -> jobs
    durations: Histogram = field(default_factory=lambda: Histogram.empty(DURATION_BOUNDS_S))

    def add(self, other: JobCounts) -> None:
        self.started += other.started
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.durations.add(other.durations)


@dataclass(slots=True)
class MeterDelta:
    """What a worker process counted since its last shipment (crosses the pipe to the supervisor)."""

    jobs: dict[tuple[str, str], JobCounts] = field(default_factory=dict)  # (queue, name) -> counts
    claim_sizes: Histogram = field(default_factory=lambda: Histogram.empty(CLAIM_SIZE_BOUNDS))
    claim_latency: Histogram = field(default_factory=lambda: Histogram.empty(CLAIM_LATENCY_BOUNDS_S))

    def __bool__(self) -> bool:
        return bool(self.jobs) or any(self.claim_sizes.counts)

    def add(self, other: MeterDelta) -> None:
        for key, counts in other.jobs.items():
            mine = self.jobs.get(key)
            if mine is None:
                self.jobs[key] = mine = JobCounts()
            mine.add(counts)
        self.claim_sizes.add(other.claim_sizes)
        self.claim_latency.add(other.claim_latency)


class JobMeter:
    """The worker process's accumulator: called from job threads, the event loop and the producer.

    The hooks only append a small tuple to a deque (atomic under the GIL: no lock for job threads to contend
    for); the shipper thread takes the events off it and adds them up once a second. Each event is taken off
    exactly once, so each is counted exactly once."""

    def __init__(self, ship: Callable[[MeterDelta], None], interval: float = SHIP_INTERVAL_S) -> None:
        """``ship(delta)`` sends one delta to the supervisor (``SupervisorLink.send``; it never raises)."""
        self._ship = ship
        self._interval = interval
        self._started: deque[tuple[str, str]] = deque()
        self._ended: deque[tuple[str, str, str, float]] = deque()
        self._claims: deque[tuple[int, float]] = deque()
        self._lock = threading.Lock()  # one taker at a time (the shipper, or stop())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- hooks (one call each, from the worker process) --------------------------------------------------
    def started(self, queue: str, name: str) -> None:
        self._started.append((queue, name))

    def ended(self, queue: str, name: str, status: str, seconds: float) -> None:
        self._ended.append((queue, name, status, seconds))

    def claimed(self, jobs: int, seconds: float) -> None:
        self._claims.append((jobs, seconds))

    # -- shipping ------------------------------------------------------------------------------------------
    def take(self) -> MeterDelta:
        """The counts of the events since the last take."""
        delta = MeterDelta()
        jobs = delta.jobs
        with self._lock:
            started, ended, claims = self._started, self._ended, self._claims
            while started:
                key = started.popleft()
                counts = jobs.get(key)
                if counts is None:
                    jobs[key] = counts = JobCounts()
                counts.started += 1
            while ended:
                queue, name, status, seconds = ended.popleft()
                counts = jobs.get((queue, name))
                if counts is None:
                    jobs[(queue, name)] = counts = JobCounts()
                outcome = OUTCOMES.get(status, status)
                counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1
                counts.durations.observe(DURATION_BOUNDS_S, seconds)
            while claims:
                size, seconds = claims.popleft()
                delta.claim_sizes.observe(CLAIM_SIZE_BOUNDS, size)
                delta.claim_latency.observe(CLAIM_LATENCY_BOUNDS_S, seconds)
        return delta

    def ship(self) -> None:
        """Send what accumulated, if anything (each count is sent exactly once)."""
        delta = self.take()
        if delta:
            self._ship(delta)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="djtasks-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the shipper and ship the rest (the process is about to say goodbye to its supervisor)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.ship()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.ship()
            except Exception:  # metrics must never stop the worker
                logger.exception("could not ship metrics to the supervisor")
