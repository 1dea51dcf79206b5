"""djtasks: background jobs for Django with PostgreSQL as broker and result store."""

from __future__ import annotations

from .canvas import chain, chord, group
from .exceptions import JobCancelled, JobFailed, NotRegistered, SerializationError, SoftTimeLimitExceeded
from .jobs import Job, JobContext, Signature, job
from .results import GroupResult, JobResult
from .schedules import periodic
from .status import JobStatus

__all__ = [
    "GroupResult",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobResult",
    "JobStatus",
    "NotRegistered",
    "SerializationError",
    "Signature",
    "SoftTimeLimitExceeded",
    "chain",
    "chord",
    "group",
    "job",
    "periodic",
]
__version__ = "0.1.0"
