"""The queue summary behind the admin's queue dashboard and ``manage.py djtasks status``.

``summary(now)`` asks four cheap questions through ``store.py``: waiting jobs per queue (the claim index), running
jobs per queue (the running index), jobs finished per queue and minute over the last hour (the finished index, so
older history is never read) and the worker rows. Its cost depends on the backlog and the last hour's traffic,
not on how many finished jobs the table keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .conf import djtasks_settings
from .cursors import django_store
from .queues import QueueState, flow_state
from .store import Store

WINDOW = timedelta(hours=1)  # "last hour" counts and the chart's span
BUCKET = timedelta(minutes=1)  # one chart bar
ALL_QUEUES = "(all queues)"


@dataclass
class Bucket:
    """Jobs that finished in ``[start, start + BUCKET)``."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass
class QueueSummary:
    """One queue now, and over the last ``WINDOW``."""

    name: str
    configured: bool = True  # False: not in DJTASKS['QUEUES'] any more, but jobs remain
    paused: bool = False
    concurrency: int | None = None  # fleet-wide running limit (effective: run-time override or settings)
    rate_limit: str = ""  # e.g. "100/m"; "" for none
    overrides: list[str] = field(default_factory=list)  # options set at run time
    queued: int = 0  # due now, waiting for a worker
    scheduled: int = 0  # queued with run_at in the future (countdown, eta, retry backoff)
    waiting: int = 0  # workflow steps whose input is not ready (their parent job or group has not succeeded)
    running: int = 0  # started: their function runs
    claimed: int = 0  # claimed ahead by a worker, waiting there for a free thread (not running yet)
    succeeded: int = 0  # in the window
    failed: int = 0  # in the window
    cancelled: int = 0  # in the window
    oldest_wait_s: float | None = None  # how long the longest-waiting due job has been due
    workers_alive: int = 0
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def limit_text(self) -> str:
        """``"3 at once"``, ``"60/s"``, both, or ``"none"``."""
        parts = ([f"{self.concurrency} at once"] if self.concurrency is not None else []) + (
            [self.rate_limit] if self.rate_limit else []
        )
        return ", ".join(parts) or "none"

    @property
    def holding(self) -> int:
        """Jobs holding a slot of the queue's ``concurrency``: every ``running`` row, started or only claimed
        (as the limited claim counts them; a limited queue is never claimed ahead, so claimed ones start at once)."""
        return self.running + self.claimed

    @property
    def fullness(self) -> float | None:
        """Slot-holding jobs (``holding``) as a fraction of ``concurrency`` (``None`` without a concurrency limit)."""
        return self.holding / self.concurrency if self.concurrency else None

    @property
    def failure_rate(self) -> float | None:
        """Failed / (succeeded + failed) in the window, or ``None`` when nothing finished."""
        done = self.succeeded + self.failed
        return self.failed / done if done else None

    @property
    def throughput_per_min(self) -> float:
        """Jobs finished per minute, averaged over the window."""
        return (self.succeeded + self.failed + self.cancelled) / (WINDOW.total_seconds() / 60)


@dataclass
class WorkerSummary:
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: int
    alive: bool
    claimed: int = 0  # jobs it holds claimed ahead, not started


@dataclass
class Summary:
    now: datetime
    queues: list[QueueSummary]
    total: QueueSummary
    workers: list[WorkerSummary]

    @property
    def workers_alive(self) -> int:
        return sum(w.alive for w in self.workers)

    @property
    def workers_dead(self) -> int:
        return len(self.workers) - self.workers_alive

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings, rates as floats."""

        def queue(q: QueueSummary) -> dict[str, Any]:
            data = asdict(q)
            data["failure_rate"] = q.failure_rate
            data["fullness"] = q.fullness
            data["limit"] = q.limit_text
            data["throughput_per_min"] = round(q.throughput_per_min, 3)
            data["buckets"] = [{**asdict(b), "start": b.start.isoformat()} for b in q.buckets]
            return data

        workers = [
            {**asdict(w), "started_at": w.started_at.isoformat(), "heartbeat_at": w.heartbeat_at.isoformat()}
            for w in self.workers
        ]
        return {
            "now": self.now.isoformat(),
            "window_s": WINDOW.total_seconds(),
            "bucket_s": BUCKET.total_seconds(),
            "queues": [queue(q) for q in self.queues],
            "total": queue(self.total),
            "workers_alive": self.workers_alive,
            "workers_dead": self.workers_dead,
            "workers": workers,
        }


def _empty_buckets(since: datetime) -> list[Bucket]:
    return [Bucket(since + i * BUCKET) for i in range(int(WINDOW / BUCKET))]


def summary(now: datetime | None = None, store: Store | None = None) -> Summary:
    """The state of every queue at ``now`` (default: the current time)."""
    now = now or timezone.now()
    store = store or django_store()
    conf = djtasks_settings.get()
    since = now - WINDOW
    options = flow_state(store).queues

    def make(name: str, configured: bool) -> QueueSummary:
        state = options.get(name) or QueueState(name)
        return QueueSummary(
            name,
            configured=configured,
            paused=state.paused,
            concurrency=state.concurrency,
            rate_limit=state.rate_text,
            overrides=list(state.overrides),
            buckets=_empty_buckets(since),
        )

    queues: dict[str, QueueSummary] = {name: make(name, True) for name in conf.QUEUES}

    def get(name: str) -> QueueSummary:
        if name not in queues:
            queues[name] = make(name, False)
        return queues[name]

    for row in store.queue_stats_waiting(now=now):
        q = get(row["queue"])
        q.queued, q.scheduled = row["queued"], row["scheduled"]
        if row["oldest_run_at"] is not None:
            q.oldest_wait_s = max(0.0, (now - row["oldest_run_at"]).total_seconds())
    for row in store.queue_stats_workflow_waiting():
        get(row["queue"]).waiting = row["waiting"]
    for row in store.queue_stats_running():
        q = get(row["queue"])
        q.running, q.claimed = row["running"], row["claimed"]
    for row in store.queue_stats_finished(now=now, since=since, bucket=BUCKET, origin=since):
        q = get(row["queue"])
        index = min(int((row["bucket"] - since) / BUCKET), len(q.buckets) - 1)
        bucket = q.buckets[index]
        bucket.succeeded += row["succeeded"]
        bucket.failed += row["failed"]
        bucket.cancelled += row["cancelled"]
        q.succeeded += row["succeeded"]
        q.failed += row["failed"]
        q.cancelled += row["cancelled"]

    timeout = timedelta(seconds=conf.WORKER_TIMEOUT)
    workers = []
    for row in store.worker_list():
        served = json.loads(row["queues"]) if row["queues"] else []
        alive = now - row["heartbeat_at"] <= timeout
        workers.append(
            WorkerSummary(
                id=str(row["id"]),
                hostname=row["hostname"],
                pid=row["pid"],
                queues=served,
                concurrency=row["concurrency"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                running=row["running"],
                alive=alive,
                claimed=row["claimed"],
            )
        )
        if alive:
            for name in served:
                get(name).workers_alive += 1

    ordered = [queues[name] for name in conf.QUEUES] + sorted(
        (q for q in queues.values() if not q.configured), key=lambda q: q.name
    )
    return Summary(now=now, queues=ordered, total=_total(ordered, since, workers), workers=workers)


def _total(queues: list[QueueSummary], since: datetime, workers: list[WorkerSummary]) -> QueueSummary:
    total = QueueSummary(ALL_QUEUES, buckets=_empty_buckets(since))
    for q in queues:
        for attr in ("queued", "scheduled", "waiting", "running", "claimed", "succeeded", "failed", "cancelled"):
            setattr(total, attr, getattr(total, attr) + getattr(q, attr))
        if q.oldest_wait_s is not None:
            total.oldest_wait_s = max(total.oldest_wait_s or 0.0, q.oldest_wait_s)
        for mine, theirs in zip(total.buckets, q.buckets, strict=True):
            mine.succeeded += theirs.succeeded
            mine.failed += theirs.failed
            mine.cancelled += theirs.cancelled
    total.workers_alive = sum(w.alive for w in workers)
    return total


def format_duration(seconds: float | None) -> str:
    """``"—"``, ``"850 ms"``, ``"42 s"``, ``"7 min 5 s"``, ``"3 h 12 min"``, ``"2 d 4 h"``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


COLUMNS: tuple[tuple[str, Callable[[QueueSummary], str]], ...] = (
    ("queue", lambda q: q.name + ("" if q.configured else " (not configured)") + (" (paused)" if q.paused else "")),
    ("queued", lambda q: str(q.queued) + (f" +{q.claimed} claimed" if q.claimed else "")),
    ("scheduled", lambda q: str(q.scheduled)),
    # A limited queue: the slots held (started or claimed, as its limit counts them) out of its limit.
    ("running", lambda q: f"{q.holding}/{q.concurrency}" if q.concurrency is not None else str(q.running)),
    ("failed/1h", lambda q: str(q.failed)),
    ("succeeded/1h", lambda q: str(q.succeeded)),
    ("fail rate", lambda q: format_rate(q.failure_rate)),
    ("jobs/min", lambda q: f"{q.throughput_per_min:.1f}"),
    ("oldest wait", lambda q: format_duration(q.oldest_wait_s)),
    ("workers", lambda q: str(q.workers_alive)),
    ("limit", lambda q: q.limit_text if q.name != ALL_QUEUES else ""),
    ("waiting", lambda q: str(q.waiting)),  # workflow steps; last, so the other columns keep their places
)


def format_text(data: Summary) -> str:
    """The summary as a plain-text table for a terminal."""
    rows = [[label for label, _ in COLUMNS]]
    rows += [[cell(q) for _, cell in COLUMNS] for q in [*data.queues, data.total]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    out = [f"djtasks status at {timezone.localtime(data.now):%Y-%m-%d %H:%M:%S %Z}", ""]
    out.append(line(rows[0]))
    out.append("  ".join("-" * w for w in widths))
    out += [line(row) for row in rows[1:-1]]
    out.append("  ".join("-" * w for w in widths))
    out.append(line(rows[-1]))
    out += [
        "",
        f"workers: {data.workers_alive} alive, {data.workers_dead} dead (no heartbeat for {djtasks_settings.WORKER_TIMEOUT:g} s)",
    ]
    for w in data.workers:
        state = "alive" if w.alive else "DEAD "
        out.append(
            f"  {state} {w.hostname}:{w.pid}  queues={','.join(w.queues)}  running {w.running}/{w.concurrency}  "
            f"last heartbeat {format_duration((data.now - w.heartbeat_at).total_seconds())} ago"
        )
    return "\n".join(out) + "\n"


def format_limits(state: QueueState) -> str:
    """One line per queue for ``manage.py djtasks queue``: its options and which were set at run time."""
    concurrency = "none" if state.concurrency is None else str(state.concurrency)
    line = f"{state.name}: concurrency={concurrency} rate_limit={state.rate_text or 'none'}"
    line += " paused" if state.paused else " running"
    if state.overrides:
        line += f" (set at run time: {', '.join(state.overrides)}; the rest from DJTASKS['QUEUES'])"
    if not state.configured:
        line += " (not in DJTASKS['QUEUES'])"
    return line
