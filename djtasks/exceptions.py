"""Exceptions raised by djtasks. All public ones live here."""

from __future__ import annotations

from typing import Any


class DjtasksError(Exception):
    """Base class of djtasks' own errors."""


class NotRegistered(DjtasksError, LookupError):
    """A job name that no ``@job`` registered (at enqueue, or in a worker that does not know it)."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        super().__init__(
            detail
            or f"no job named {name!r} is registered; is the module that defines it in an installed app's "
            "tasks.py (or imported by one)?"
        )
        self.name = name


class SerializationError(DjtasksError, TypeError):
    """An argument or result that is not JSON-serializable. Names the argument and its type."""


class JobFailed(DjtasksError):
    """Raised by ``JobResult.get()`` for a job that failed; carries the remote error.

    ``exc_type`` is the dotted path of the exception class raised in the worker, ``message`` its text and
    ``traceback`` the formatted remote traceback.
    """

    def __init__(self, job_id: Any, exc_type: str, message: str, traceback: str = "", status: str = "failed") -> None:
        super().__init__(f"job {job_id} {status}: {exc_type}: {message}")
        self.job_id = job_id
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.status = status


class JobCancelled(JobFailed):
    """Raised by ``JobResult.get()`` for a job that was cancelled (or expired before it ran)."""


class JobExpired(DjtasksError):
    """Recorded for a job whose ``expires`` passed before a worker started it; the job never ran."""


class SoftTimeLimitExceeded(DjtasksError):
    """Raised inside a running job when its ``soft_time_limit`` passes, so it can clean up and stop.

    It is an ``Exception``: a job may catch it (and return, or re-raise). Uncaught, it fails the attempt like
    any other exception (and retries when ``retry_on`` allows). It is raised when the job's thread next runs
    Python code: a blocking C call (``time.sleep``, a socket read, a long C extension call) is not
    interrupted, which is what the hard ``time_limit`` is for.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(args or ("soft time limit exceeded",)))


class TimeLimitExceeded(DjtasksError):
    """Recorded for an attempt that ran past its hard ``time_limit``: its worker process was killed."""


class WorkerLost(DjtasksError):
    """Recorded for an attempt whose worker process died (or went silent for ``WORKER_TIMEOUT``) while
    running it; the attempt counts, and the job runs again while attempts remain."""


class Retry(DjtasksError):
    """Raised by ``ctx.retry()``: ends this attempt and schedules the next one."""

    def __init__(self, countdown: float | None = None, exc: BaseException | None = None) -> None:
        super().__init__(f"retry requested (countdown={countdown})")
        self.countdown = countdown
        self.exc = exc
