"""The producer's view of flow control: which of its queues are paused or limited, and how a limited claim
is planned under the locks.

Options live in ``djtasks_queue`` (``DJTASKS['QUEUES']`` are the defaults, written by ``sync``). A producer
reads them at start, on a ``djtasks_queue`` notification (sent when an operator changes a queue) and every
``REFRESH_S`` in case one was missed. They decide only which claim a queue goes to:

- unlimited, unpaused queues: the plain ``job_claim_many``, which never touches ``djtasks_queue``;
- paused queues: none (running jobs finish; enqueueing still works);
- limited queues (``concurrency`` or ``rate_limit``) and jobs with ``@job(concurrency=)``:
  ``job_claim_limited_many``, which locks their rows and re-reads the options there, so a limit is exact
  even while this view is a moment old. It claims no more than the threads free now: limited jobs are never
  claimed ahead, where they would hold a slot of the fleet-wide limit while waiting for a thread.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..conf import djtasks_settings
from ..flow import Allowance, Limits, claim_cap, parse_rate
from ..registry import registry
from ..rows import ClaimedJob
from ..store import Store

logger = logging.getLogger("djtasks.worker")

REFRESH_S = 5.0  # options are re-read at least this often (a notification normally brings them at once)


def default_options() -> list[dict[str, Any]]:
    """The rows ``DJTASKS['QUEUES']`` and the registered ``@job(concurrency=)`` limits ask for."""
    rows = [
        {
            "kind": "queue",
            "name": q.name,
            "concurrency": q.concurrency,
            "rate_limit": q.rate_limit.text if q.rate_limit else "",
            "paused": q.paused,
        }
        for q in djtasks_settings.QUEUES.values()
    ]
    rows += [
        {"kind": "job", "name": j.name, "concurrency": j.concurrency, "rate_limit": "", "paused": False}
        for j in registry.all()
        if j.concurrency is not None
    ]
    return rows


def row_limits(row: dict[str, Any]) -> Limits:
    """A ``djtasks_queue`` row's options; a rate the database holds but cannot be parsed counts as none."""
    rate = None
    if row["rate_limit"]:
        try:
            rate = parse_rate(row["rate_limit"])
        except ValueError:
            logger.error("queue %s: ignoring bad rate_limit %r in djtasks_queue", row["name"], row["rate_limit"])
    return Limits(row["concurrency"], rate, row["paused"])


@dataclass
class ClaimResult:
    rows: list[ClaimedJob] = field(default_factory=list)
    wait: float | None = None  # seconds until a rate limit allows a start (None: no rate limit held us)
    open_queues: list[str] = field(default_factory=list)  # limited queues that could take more jobs
    full_names: list[str] = field(default_factory=list)  # job names at their concurrency limit


class FlowControl:
    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = list(queues)
        self.fast: list[str] = list(queues)  # unlimited and not paused
        self.limited: list[str] = []  # limited and not paused
        self.job_limits: dict[str, int] = {}  # job name -> concurrency
        self.notify: frozenset[str] = frozenset()  # queues whose finishing jobs must wake other workers
        self.stale = True
        self._read_at = -REFRESH_S

    def sync(self, store: Store, now: datetime) -> None:
        """Write the settings' defaults (options overridden at run time stay)."""
        store.queue_sync_many(now=now, options=default_options())

    def age(self) -> float:
        """Seconds since the options were last read."""
        return time.monotonic() - self._read_at

    def refresh(self, store: Store) -> None:
        rows = store.queue_options_list()
        self._read_at = time.monotonic()
        self.stale = False
        queues = {row["name"]: row_limits(row) for row in rows if row["kind"] == "queue"}
        self.job_limits = {
            row["name"]: row["concurrency"] for row in rows if row["kind"] == "job" and row["concurrency"]
        }
        fast: list[str] = []
        limited: list[str] = []
        for name in self.queues:
            limits = queues.get(name, Limits())
            if limits.paused:
                continue
            (limited if limits.limited else fast).append(name)
        if (fast, limited) != (self.fast, self.limited):
            paused = sorted(set(self.queues) - set(fast) - set(limited))
            logger.info(
                "flow control: unlimited %s, limited %s, paused %s, job limits %s",
                fast,
                limited,
                paused,
                json.dumps(self.job_limits),
            )
        self.fast, self.limited = fast, limited
        self.notify = frozenset(limited)

    def wakes_others(self, row: ClaimedJob) -> str | None:
        """The queue to NOTIFY when this claimed job finishes (its slot frees for the fleet), else None."""
        if row["queue"] in self.notify or row["name"] in self.job_limits:
            return row["queue"]
        return None

    @property
    def any_limited(self) -> bool:
        return bool(self.limited or (self.job_limits and self.fast))

    def claim(self, store: Store, *, now: datetime, worker_id: Any, free: int) -> ClaimResult:
        """Claim from the limited queues and job names, at most ``free`` jobs (the idle threads)."""
        result = ClaimResult()
        if free <= 0 or not self.any_limited:
            return result
        jobs = sorted(self.job_limits)

        def plan(locked: list[dict[str, Any]], running: dict[tuple[str, str], int]) -> dict[str, Any] | None:
            rows = {(row["kind"], row["name"]): row for row in locked}
            queues, caps, names_only, rated, intervals = [], [], [], [], []
            for name in self.limited:
                row = rows.get(("queue", name))
                if row is None:  # no row: its options were removed meanwhile; next refresh sees it
                    continue
                limits = row_limits(row)
                allowance: Allowance = claim_cap(
                    limits, running=running.get(("queue", name), 0), tat=row["rate_tat"], now=now, free=free
                )
                if allowance.wait > 0:
                    result.wait = allowance.wait if result.wait is None else min(result.wait, allowance.wait)
                if allowance.starts > 0:
                    queues.append(name)
                    caps.append(allowance.starts)
                    names_only.append(False)
                    result.open_queues.append(name)
                    if limits.rate_limit is not None:
                        rated.append(name)
                        intervals.append(limits.rate_limit.interval)
            open_names, name_caps, full_names = [], [], []
            for name in jobs:
                row = rows.get(("job", name))
                limit = row["concurrency"] if row is not None else None
                if limit is None:
                    continue
                left = limit - running.get(("job", name), 0)
                if left > 0:
                    open_names.append(name)
                    name_caps.append(min(left, free))
                else:
                    full_names.append(name)
            result.full_names = full_names
            if open_names:
                for name in self.fast:
                    queues.append(name)
                    caps.append(free)
                    names_only.append(True)
            if not queues:
                return None
            return {
                "now": now,
                "worker_id": worker_id,
                "queues": queues,
                "caps": caps,
                "names_only": names_only,
                "open_names": open_names,
                "name_caps": name_caps,
                "full_names": full_names,
                "rated_queues": rated,
                "intervals": intervals,
                "limit": free,
            }

        result.rows = store.job_claim_limited_many(queues=self.limited, jobs=jobs, plan=plan)
        return result
