"""djtasks: background jobs for Django with PostgreSQL as broker and result store."""

from __future__ import annotations

from .canvas import Signature, chain, chord, group
from .exceptions import JobCancelled, JobFailed, NotRegistered, SerializationError, SoftTimeLimitExceeded
from .jobs import Job, JobContext, job
from .periodic import periodic
from .queues import QueueOptionError, pause_queue, resume_queue
from .results import GroupResult, JobResult
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
    "QueueOptionError",
    "SerializationError",
    "Signature",
    "SoftTimeLimitExceeded",
    "chain",
    "chord",
    "group",
    "job",
    "pause_queue",
    "periodic",
    "resume_queue",
]
__version__ = "0.1.0"
