"""``JobResult``: a handle on one job's row, from the process that enqueued it or from anywhere else."""

from __future__ import annotations

import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async

from . import serialization
from .exceptions import JobCancelled, JobFailed
from .status import JobStatus, shown_status

GET_POLL_START_S = 0.01  # first wait between reads in get(); doubles up to GET_POLL_MAX_S
GET_POLL_MAX_S = 0.5


class JobResult:
    """The state and outcome of one job, read from the database.

    ``JobResult(id)`` works anywhere; attributes reflect the last read (``refresh()`` reads again; ``status``,
    ``ready()`` and friends read when nothing was read yet).
    """

    def __init__(self, id: uuid.UUID | str, *, name: str | None = None) -> None:
        self.id = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        self._name = name
        self._row: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<JobResult {self.id} {self.status if self._row else '?'}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- reading --------------------------------------------------------------------------------------
    def refresh(self) -> JobResult:
        """Read the row again. Raises ``LookupError`` if no such job exists (never enqueued, rolled back,
        or pruned)."""
        from .store import Store

        row = Store.for_django().job_get(self.id)
        if row is None:
            raise LookupError(f"no job {self.id}: never enqueued, rolled back, or pruned after RESULT_TTL")
        self._row = row
        return self

    def _data(self) -> dict[str, Any]:
        if self._row is None:
            self.refresh()
        assert self._row is not None
        return self._row

    @property
    def name(self) -> str:
        return self._name or self._data()["name"]

    @property
    def status(self) -> JobStatus:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``. A job a worker has claimed
        ahead but not started yet is ``queued``: ``running`` means its function runs."""
        row = self._data()
        return shown_status(row["status"], row["started_at"])

    @property
    def attempts(self) -> int:
        """Attempts started so far (the first run is attempt 1)."""
        return self._data()["attempt"]

    @property
    def result(self) -> Any:
        """The return value of a succeeded job (``None`` before that)."""
        return serialization.loads(self._data()["result"])

    @property
    def errors(self) -> list[dict[str, Any]]:
        """One entry per failed attempt: ``type`` (exception class path), ``message``, ``traceback``,
        ``attempt``, ``at``."""
        return serialization.loads(self._data()["errors"]) or []

    @property
    def error(self) -> dict[str, Any] | None:
        """The last attempt's error, or ``None``."""
        errors = self.errors
        return errors[-1] if errors else None

    def ready(self) -> bool:
        """True once the job succeeded, failed or was cancelled (reads the row again)."""
        return self.refresh().status.is_final

    def successful(self) -> bool:
        return self.refresh().status == JobStatus.SUCCEEDED

    def failed(self) -> bool:
        return self.refresh().status in (JobStatus.FAILED, JobStatus.CANCELLED)

    # -- acting ---------------------------------------------------------------------------------------
    def cancel(self, terminate: bool = False) -> bool:
        """Cancel the job: if still queued it never runs (status ``cancelled`` at once); if running, it is
        asked to stop (``ctx.is_cancelled()`` becomes True) or, with ``terminate=True``, its worker process
        is killed. See ``djtasks.operations.cancel_jobs``. Returns False if the job had already finished."""
        from .operations import cancel_jobs

        changed = cancel_jobs([self.id], terminate=terminate)
        self._row = None
        return self.id in changed

    # -- waiting --------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the job to finish and return its result.

        A failed job raises ``JobFailed`` (a cancelled or expired one ``JobCancelled``) carrying the remote
        exception's type, message and traceback; with ``propagate=False`` it returns the error dict instead.
        Past ``timeout`` seconds raises ``TimeoutError``. Do not call it inside the transaction that
        enqueued the job: the job cannot run before that transaction commits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = GET_POLL_START_S
        while not self.ready():
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {self.id} ({self.name}) not finished after {timeout} s: {self.status}")
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 2, GET_POLL_MAX_S)
        if self.status == JobStatus.SUCCEEDED:
            return self.result
        if not propagate:
            return self.error
        err = self.error or {"type": "djtasks.exceptions.JobCancelled", "message": "cancelled", "traceback": ""}
        cls = JobCancelled if self.status == JobStatus.CANCELLED else JobFailed
        raise cls(self.id, err["type"], err["message"], err.get("traceback", ""), status=self.status.value)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """``get()`` for async code."""
        return await sync_to_async(self.get, thread_sensitive=True)(timeout=timeout, propagate=propagate)
