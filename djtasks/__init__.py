"""djtasks: background jobs for Django with PostgreSQL as broker and result store."""

from __future__ import annotations

from .exceptions import JobCancelled, JobFailed, NotRegistered, SerializationError, SoftTimeLimitExceeded
from .jobs import Job, JobContext, Signature, job
from .queues import QueueOptionError, pause_queue, resume_queue
from .results import JobResult
from .schedules import periodic
from .status import JobStatus

__all__ = [
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
    "job",
    "pause_queue",
    "periodic",
    "resume_queue",
]
__version__ = "0.1.0"
