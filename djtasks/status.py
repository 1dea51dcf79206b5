"""Job status values."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class JobStatus(StrEnum):
    WAITING = "waiting"  # a workflow step whose input is not ready: its parent job or group has not succeeded
    QUEUED = "queued"  # waiting; run_at may be in the future (scheduled, or a retry's backoff)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # cancelled, or expired before a worker started it

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def shown_status(status: str, started_at: datetime | None) -> JobStatus:
    """The status a job has for its users. In the table a job a worker claimed ahead is ``running`` (owned by
    that worker, fenced by its id) with ``started_at`` NULL until its function starts: to everyone else it
    is still waiting, so ``queued``."""
    if status == JobStatus.RUNNING and started_at is None:
        return JobStatus.QUEUED
    return JobStatus(status)
