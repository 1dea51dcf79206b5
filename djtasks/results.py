"""``JobResult``: a handle on one job's row, from the process that enqueued it or from anywhere else."""

from __future__ import annotations

import time
import uuid
from typing import Any, Self

from asgiref.sync import sync_to_async

from . import serialization
from .exceptions import JobCancelled, JobFailed
from .status import JobStatus, shown_status

GET_POLL_START_S = 0.01  # first wait between reads in get(); doubles up to GET_POLL_MAX_S
GET_POLL_MAX_S = 0.5


class _LazyRow:
    """A handle on one row, read on first use and again on ``refresh()``."""

    _row: dict[str, Any] | None

    def _read(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _missing(self) -> str:
        raise NotImplementedError

    def refresh(self) -> Self:
        """Read the row again. Raises ``LookupError`` if there is no such row (see ``_missing``)."""
        row = self._read()
        if row is None:
            raise LookupError(self._missing())
        self._row = row
        return self

    def _data(self) -> dict[str, Any]:
        if self._row is None:
            self.refresh()
        assert self._row is not None
        return self._row


class JobResult(_LazyRow):
    """The state and outcome of one job, read from the database.

    ``JobResult(id)`` works anywhere; attributes reflect the last read (``refresh()`` reads again; ``status``,
    ``ready()`` and friends read when nothing was read yet).
    """

    def __init__(self, id: uuid.UUID | str, *, name: str | None = None, deduplicated: bool = False) -> None:
        self.id = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        self._name = name
        self._row: dict[str, Any] | None = None
        #: True when a unique job's ``.delay()`` inserted nothing and returned this existing job instead.
        self.deduplicated = deduplicated

    def __repr__(self) -> str:
        return f"<JobResult {self.id} {self.status if self._row else '?'}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- reading --------------------------------------------------------------------------------------
    def refresh(self) -> Self:
        """Read the row again. Raises ``LookupError`` if no such job exists (never enqueued, rolled back,
        or pruned)."""
        return super().refresh()

    def _read(self) -> dict[str, Any] | None:
        from .cursors import django_store

        return django_store().job_get(self.id)

    def _missing(self) -> str:
        return f"no job {self.id}: never enqueued, rolled back, or pruned after RESULT_TTL"

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
        return int(self._data()["attempt"])

    @property
    def progress(self) -> Any:
        """The last value the job gave ``ctx.set_progress()`` (``None`` if none); reads the row again."""
        return serialization.loads(self.refresh()._data()["progress"])

    @property
    def parent(self) -> JobResult | GroupResult | None:
        """The job (or, for a chord callback, the ``GroupResult`` of the header) whose result this workflow step
        took as input; ``None`` outside a workflow or for its first steps."""
        row = self._data()
        if row["parent_id"] is None:
            return None
        if row["parent_is_group"]:
            return GroupResult(row["parent_id"])
        return JobResult(row["parent_id"])

    @property
    def children(self) -> list[JobResult]:
        """The workflow steps waiting for this job's result (the next step of a chain, a group's members)."""
        links = serialization.loads(self._data()["on_success"]) or []
        return [JobResult(link["id"]) for link in links]

    @property
    def group(self) -> GroupResult | None:
        """The group this job is a member of, if any."""
        group_id = self._data()["group_id"]
        return None if group_id is None else GroupResult(group_id)

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
        """True once the job succeeded, failed or was cancelled (reads the row again); a ``waiting`` workflow
        step is not ready."""
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
        raise _error_of(self)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """``get()`` for async code."""
        return await sync_to_async(self.get, thread_sensitive=True)(timeout=timeout, propagate=propagate)


def _error_of(result: JobResult) -> JobFailed:
    """The exception ``get()`` raises for a failed or cancelled job (from its last read)."""
    err = result.error or {"type": "djtasks.exceptions.JobCancelled", "message": "cancelled", "traceback": ""}
    cls = JobCancelled if result.status == JobStatus.CANCELLED else JobFailed
    return cls(result.id, err["type"], err["message"], err.get("traceback", ""), status=result.status.value)


class GroupResult(_LazyRow):
    """The members of a ``group`` (or a chord header): ``GroupResult(id)`` reloads one from anywhere.

    ``results`` are the members' ``JobResult`` in the order given (for a member that is a chain, its last
    step). ``remaining`` / ``total`` are the group's counter: members that have not succeeded yet.
    """

    def __init__(self, id: uuid.UUID | str) -> None:
        self.id = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        self._row: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<GroupResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _store(self) -> Any:
        from .cursors import django_store

        return django_store()

    def refresh(self) -> Self:
        """Read the group's row again. Raises ``LookupError`` if there is no such group."""
        return super().refresh()

    def _read(self) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self._store().group_get(self.id)
        return row

    def _missing(self) -> str:
        return f"no group {self.id}: never enqueued or rolled back"

    @property
    def results(self) -> list[JobResult]:
        return [JobResult(member) for member in self._data()["members"]]

    @property
    def total(self) -> int:
        return int(self._data()["total"])

    @property
    def remaining(self) -> int:
        """Members that have not succeeded yet (reads the row again)."""
        return int(self.refresh()._data()["remaining"])

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = self._store().group_status_count(self.id)
        return counts

    def ready(self) -> bool:
        """True once every member succeeded, failed or was cancelled."""
        counts = self._counts()
        return sum(counts.get(s.value, 0) for s in JobStatus if s.is_final) >= self.total

    def successful(self) -> bool:
        """True once every member succeeded."""
        return self._counts().get(JobStatus.SUCCEEDED.value, 0) >= self.total

    def failed(self) -> bool:
        """True if any member failed or was cancelled."""
        counts = self._counts()
        return bool(counts.get(JobStatus.FAILED.value) or counts.get(JobStatus.CANCELLED.value))

    def completed_count(self) -> int:
        """How many members succeeded."""
        return self._counts().get(JobStatus.SUCCEEDED.value, 0)

    def cancel(self, terminate: bool = False) -> int:
        """Cancel every job of the group not finished yet (see ``JobResult.cancel``): the members and, for a
        member that is a chain or a chord, the steps before its last one. What waits for the group (a chord
        callback) ends cancelled too. Returns how many jobs it changed."""
        from .operations import cancel_jobs

        return len(cancel_jobs(self._job_ids(), terminate=terminate))

    def _job_ids(self) -> list[uuid.UUID]:
        """The members and every job upstream of them inside this group (up to what the group waits for)."""
        store = self._store()
        outside = self._data()["parent_id"]
        found: list[uuid.UUID] = []
        seen: set[uuid.UUID] = set()
        frontier = list(self._data()["members"])
        while frontier:
            fresh = [i for i in frontier if i not in seen and i != outside]
            seen.update(fresh)
            frontier = []
            rows = store.job_get_many(fresh)
            for node in fresh:
                row = rows.get(node)
                if row is None:  # a group a member waits for (a chord inside this group): its members
                    inner = store.group_get(node)
                    if inner is not None:
                        frontier.extend(inner["members"])
                    continue
                found.append(node)
                if row["parent_id"] is not None:
                    frontier.append(row["parent_id"])
        return found

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Wait for every member and return their results in order. With ``propagate`` the first failed or
        cancelled member (in order) raises ``JobFailed`` / ``JobCancelled``; without it its place holds the
        error dict. Past ``timeout`` seconds raises ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = GET_POLL_START_S
        while not self.ready():
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"group {self.id}: {self.completed_count()} of {self.total} members succeeded after {timeout} s"
                    )
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 2, GET_POLL_MAX_S)
        members = self._data()["members"]
        rows = self._store().job_get_many(members)
        values = []
        for member in members:
            result = JobResult(member)
            result._row = rows.get(member)
            if result._row is None:
                raise LookupError(f"group {self.id}: member job {member} is gone (pruned after RESULT_TTL?)")
            if result.status == JobStatus.SUCCEEDED:
                values.append(result.result)
            elif propagate:
                raise _error_of(result)
            else:
                values.append(result.error)
        return values
