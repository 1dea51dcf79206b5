"""Deletes finished jobs older than their time to live, in small batches.

Small batches keep each transaction short, so pruning a large history never holds locks or bloats WAL in
one burst, and never competes with claims (it only touches finished rows, through their own index). Under
the maintenance runner each batch is a transaction of its own holding the pruner's lock (``run_gated``): two
supervisors never delete at once, and none holds a transaction open across the whole run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..store import Store

logger = logging.getLogger("djtasks.maintenance")

PRUNE_INTERVAL_S = 60.0  # how often the supervisor's pruner looks for expired results
BATCH_SIZE = 1000  # rows per DELETE statement
MAX_BATCHES = 100  # per run_once(): at most 100,000 rows, then yield to the next round

SUCCEEDED_STATUSES = ("succeeded", "cancelled")
FAILED_STATUSES = ("failed",)


Gate = Callable[[], AbstractContextManager[bool]]  # a transaction holding the pruner's lock (see runner.py)


@contextlib.contextmanager
def _ungated() -> Iterator[bool]:
    yield True


class LockLost(Exception):
    """Another process holds the pruner's lock now: this run stops where it is."""


@dataclass(frozen=True)
class PruneResult:
    succeeded: int  # succeeded and cancelled jobs deleted
    failed: int
    complete: bool  # False if MAX_BATCHES stopped it with more to delete

    @property
    def deleted(self) -> int:
        return self.succeeded + self.failed


def _prune(
    store: Store, statuses: tuple[str, ...], before: datetime, batch: int, budget: int, gate: Gate
) -> tuple[int, int, bool]:
    """Delete in batches until a short batch or the budget; returns (deleted, batches used, done)."""
    deleted = 0
    for used in range(1, budget + 1):
        with gate() as held:
            if not held:
                raise LockLost
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
    gate: Gate = _ungated,
) -> PruneResult:
    """Delete succeeded/cancelled jobs finished more than ``result_ttl`` seconds before ``now`` and failed
    ones past ``failed_result_ttl``, at most ``max_batches`` statements of ``batch`` rows in all. Each batch
    runs in ``gate()``; ``LockLost`` when one is refused."""
    ok, used, ok_done = _prune(store, SUCCEEDED_STATUSES, now - timedelta(seconds=result_ttl), batch, max_batches, gate)
    if not ok_done:
        return PruneResult(ok, 0, complete=False)
    failed, _, failed_done = _prune(
        store,
        FAILED_STATUSES,
        now - timedelta(seconds=failed_result_ttl),
        batch,
        max(1, max_batches - used),
        gate,
    )
    if failed_done:  # groups whose members are all gone (the oldest TTL bounds how old such a group can be)
        oldest = now - timedelta(seconds=max(result_ttl, failed_result_ttl))
        for _ in range(max_batches):
            with gate() as held:
                if not held:
                    raise LockLost
                count = store.group_prune_many(before=oldest, limit=batch)
            if count < batch:
                break
    return PruneResult(ok, failed, complete=failed_done)


class Pruner:
    """Maintenance service: ``run_once(now)`` deletes what outlived ``RESULT_TTL`` / ``FAILED_RESULT_TTL``."""

    name = "pruner"

    def __init__(self, store: Store, *, interval: float = PRUNE_INTERVAL_S) -> None:
        self.store = store
        self.interval = interval

    def run_once(self, now: datetime) -> PruneResult:
        return self._run(now, _ungated)

    def run_gated(self, now: datetime, gate: Gate) -> PruneResult | None:
        """``run_once`` with each batch in a transaction of ``gate()`` (the maintenance runner's lock); None
        when a batch's lock was refused: another process is pruning, and goes on from there."""
        try:
            return self._run(now, gate)
        except LockLost:
            return None

    def _run(self, now: datetime, gate: Gate) -> PruneResult:
        from ..conf import djtasks_settings

        result = run_once(
            now,
            self.store,
            result_ttl=djtasks_settings.RESULT_TTL,
            failed_result_ttl=djtasks_settings.FAILED_RESULT_TTL,
            gate=gate,
        )
        if result.deleted:
            logger.info("pruner: deleted %d succeeded/cancelled and %d failed job(s)", result.succeeded, result.failed)
        return result


def prune_all(now: datetime, store: Store) -> PruneResult:
    """Prune until nothing past its TTL is left (``manage.py djtasks prune``); batches stay small."""
    from ..conf import djtasks_settings

    succeeded = failed = 0
    while True:
        result = run_once(
            now, store, result_ttl=djtasks_settings.RESULT_TTL, failed_result_ttl=djtasks_settings.FAILED_RESULT_TTL
        )
        succeeded += result.succeeded
        failed += result.failed
        if result.complete:
            return PruneResult(succeeded, failed, complete=True)
