"""The database-level gauges: what the job, worker and schedule tables hold now, read cheaply.

Cost does not grow with the history: the counts of waiting and running jobs are exact but read only the
partial indexes that hold those rows (the claim index, the running index, the waiting-steps index), the
finished jobs (succeeded, failed, cancelled: usually nearly all of a big table) are *estimated* from the
planner's statistics (``pg_class.reltuples`` and ``pg_stats``, refreshed by (auto)ANALYZE), and workers and
schedules are small tables. On a table of a million finished rows a snapshot takes a few milliseconds (see
``docs/metrics.md``). A backlog of queued jobs is counted exactly, so a huge backlog costs an index-only scan of it.

How the finished estimate is made: the table's row estimate times a queue's share of the rows (the queue
column's most common values) gives that queue's rows; less its exact active rows, its finished rows; those
are split between succeeded, failed and cancelled in the proportions the status column has table-wide.
Queues too rare to be among the most common values get no estimate. Before the first ANALYZE there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..store import Store

FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
# Categories of active jobs, as the admin's queue dashboard shows them.
ACTIVE_STATES = ("queued", "scheduled", "waiting", "claimed", "running")


@dataclass(frozen=True)
class DatabaseSnapshot:
    """The gauges at ``now``."""

    now: datetime
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, state) -> exact count, ACTIVE_STATES
    finished_estimate: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) -> estimate
    oldest_wait_s: dict[str, float] = field(default_factory=dict)  # queue -> age of its oldest due job (0: none)
    workers_alive: int = 0
    workers_dead: int = 0  # rows whose heartbeat is older than WORKER_TIMEOUT (the rescuer removes them)
    schedule_lag_s: float = 0.0  # how late the most overdue enabled schedule is (0: none is overdue)


def read(store: Store, *, now: datetime, worker_timeout: float) -> DatabaseSnapshot:
    """Take a snapshot with ``store`` (a handful of cheap statements; see the module doc)."""
    jobs: dict[tuple[str, str], int] = {}
    oldest: dict[str, float] = {}
    for row in store.queue_stats_waiting(now=now):
        jobs[(row["queue"], "queued")] = row["queued"]
        jobs[(row["queue"], "scheduled")] = row["scheduled"]
        due = row["oldest_run_at"]
        oldest[row["queue"]] = max(0.0, (now - due).total_seconds()) if due is not None else 0.0
    for row in store.queue_stats_workflow_waiting():
        jobs[(row["queue"], "waiting")] = row["waiting"]
    for row in store.queue_stats_running():
        jobs[(row["queue"], "running")] = row["running"]
        jobs[(row["queue"], "claimed")] = row["claimed"]
    queues = {queue for queue, _ in jobs}
    for queue in queues:
        oldest.setdefault(queue, 0.0)
        for state in ACTIVE_STATES:
            jobs.setdefault((queue, state), 0)
    workers = store.worker_count_alive(cutoff=now - timedelta(seconds=worker_timeout))
    due = store.schedule_oldest_due(now=now)
    return DatabaseSnapshot(
        now=now,
        jobs=jobs,
        finished_estimate=estimate_finished(store.job_count_estimate(), store.job_stats_estimate(), jobs),
        oldest_wait_s=oldest,
        workers_alive=workers["alive"],
        workers_dead=workers["dead"],
        schedule_lag_s=max(0.0, (now - due).total_seconds()) if due is not None else 0.0,
    )


def estimate_finished(
    total: int | None, shares: dict[str, dict[str, float]], active: dict[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    """``(queue, status) -> rows`` of finished jobs, from the table's row estimate ``total``, the columns'
    most common values' ``shares`` (``Store.job_stats_estimate``) and the exact ``active`` counts."""
    statuses = {s: shares.get("status", {}).get(s, 0.0) for s in FINISHED_STATUSES}
    finished_share = sum(statuses.values())
    if not total or not finished_share:
        return {}
    found: dict[tuple[str, str], int] = {}
    for queue, share in shares.get("queue", {}).items():
        rows = total * share - sum(n for (q, _), n in active.items() if q == queue)
        for status, status_share in statuses.items():
            found[(queue, status)] = max(0, round(rows * status_share / finished_share))
    return found
