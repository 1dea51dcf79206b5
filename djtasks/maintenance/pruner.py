"""Deletes finished jobs older than their time to live, in small batches.

Small batches keep each transaction short, so pruning a large history never holds locks or bloats WAL in
one burst, and never competes with claims (it only touches finished rows, through their own index).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..store import Store

BATCH_SIZE = 1000  # rows per DELETE statement
MAX_BATCHES = 100  # per run_once(): at most 100,000 rows, then yield to the next round

SUCCEEDED_STATUSES = ("succeeded", "cancelled")
FAILED_STATUSES = ("failed",)


@dataclass(frozen=True)
class PruneResult:
    succeeded: int  # succeeded and cancelled jobs deleted
    failed: int
    complete: bool  # False if MAX_BATCHES stopped it with more to delete

    @property
    def deleted(self) -> int:
        return self.succeeded + self.failed


def _prune(store: Store, statuses: tuple[str, ...], before: datetime, batch: int, budget: int) -> tuple[int, int, bool]:
    """Delete in batches until a short batch or the budget; returns (deleted, batches used, done)."""
    deleted = 0
    for used in range(1, budget + 1):
        count = store.job_prune_many(statuses=statuses, before=before, limit=batch)
        deleted += count
        if count < batch:
            return deleted, used, True
    return deleted, budget, False


def run_once(
    now: datetime,
    store: Store,
    *,
    result_ttl: float,
    failed_result_ttl: float,
    batch: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> PruneResult:
    """Delete succeeded/cancelled jobs finished more than ``result_ttl`` seconds before ``now`` and failed
    ones past ``failed_result_ttl``, at most ``max_batches`` statements of ``batch`` rows in all."""
    ok, used, ok_done = _prune(store, SUCCEEDED_STATUSES, now - timedelta(seconds=result_ttl), batch, max_batches)
    if not ok_done:
        return PruneResult(ok, 0, complete=False)
    failed, _, failed_done = _prune(
        store,
        FAILED_STATUSES,
        now - timedelta(seconds=failed_result_ttl),
        batch,
        max(1, max_batches - used),
    )
    return PruneResult(ok, failed, complete=failed_done)
