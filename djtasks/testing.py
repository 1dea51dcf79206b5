"""Test code that enqueues jobs, without a worker process: ``JobRunner`` runs due jobs in-process.

For a project's own tests, in ``django.test.TestCase`` (or ``TransactionTestCase``) and in pytest-django::

    from djtasks.testing import JobRunner

    class SignupTests(TestCase):
        def test_welcome_email(self):
            jobs = JobRunner()
            self.client.post("/signup/", {...})            # the view calls send_welcome_email.delay(...)
            jobs.assert_enqueued(send_welcome_email, args=[1])
            jobs.run()                                      # runs it here, as a worker would
            self.assertEqual(len(mail.outbox), 1)

What holds, and why:

- Jobs are claimed, run and recorded by the worker's own code (``store.job_claim_many``, ``worker.executor``,
  ``store.job_finish_many``) on the test's database connection, so retries, backoff, ``ctx.retry()``,
  expiry, cancel requests, signals and what finishing a job sets off behave as under ``runworker``.
- Transactions are respected: jobs are rows written in the enqueuing transaction, so a job enqueued in a
  block that rolled back does not exist and never runs; jobs run inside the test's transaction (which
  ``TestCase`` rolls back at the end) and see the data the test made.
- Time is the runner's clock: real time plus what ``advance()`` added (or any callable you pass). A job
  enqueued with ``countdown=60`` runs once ``advance(60)`` has passed it; a retry's backoff is counted on the
  same clock, so a test never sleeps.
- Nothing runs by itself: ``run()`` runs what is due when called (and what those jobs enqueue or retry that
  is due at once), in priority order like a worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from . import serialization, tracing
from .conf import djtasks_settings
from .cursors import django_store
from .exceptions import NotRegistered
from .ids import uuid7
from .jobs import Job
from .models import Job as JobRow
from .results import JobResult
from .rows import ClaimedJob, Outcome
from .status import JobStatus
from .worker.async_executor import invoke
from .worker.executor import execute
from .worker.outcomes import Prepared, conclude, lookup, prepare

MAX_JOBS_PER_RUN = 1000  # run() stops (and raises) past this many: a job that keeps enqueueing itself

__all__ = ["EnqueuedJob", "JobRunner", "JobsTestMixin", "TooManyJobs"]


class TooManyJobs(RuntimeError):
    """``run()`` ran ``max_jobs`` jobs and more were still due (a job that enqueues or retries itself)."""


@dataclass(frozen=True)
class EnqueuedJob:
    """One job row as a test sees it: arguments decoded as the job will receive them."""

    id: uuid.UUID
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    status: str
    run_at: datetime
    attempt: int
    max_attempts: int

    @property
    def result(self) -> JobResult:
        return JobResult(self.id, name=self.name)


class Clock:
    """Real time (``django.utils.timezone.now()``, so a frozen time applies) plus an offset moved by ``advance``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return timezone.now() + self.offset


def _name(job: Job | str) -> str:
    if isinstance(job, Job):
        return job.name
    if isinstance(job, str):
        return job
    raise TypeError(f"expected a @job or a job name, got {job!r}")


class JobRunner:
    """Runs enqueued jobs in this process, on Django's connection for ``DJTASKS['DATABASE']``.

    ``clock``: a callable returning an aware datetime; default real time plus ``advance()``. ``queues``: the
    queues to run (default: all of ``DJTASKS['QUEUES']``).
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None, queues: Iterable[str] | None = None) -> None:
        self._own_clock = Clock()
        self.clock: Callable[[], datetime] = clock if clock is not None else self._own_clock
        self.queues = list(queues) if queues is not None else None
        self.worker_id = uuid7()  # fences what this runner claims, as a worker process's id does

    # -- time -----------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the runner's clock forward (jobs with a countdown, retries waiting for their backoff); returns
        the new now. Only for the default clock: a clock you passed is yours to move."""
        if self.clock is not self._own_clock:
            raise TypeError("advance() moves the runner's own clock; this runner was given clock=..., move that one")
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward, got {delta}")
        self._own_clock.offset += delta
        return self.now()

    # -- running --------------------------------------------------------------------------------------
    def run_one(self) -> JobResult | None:
        """Claim the highest-priority due job, run it, record its outcome; ``None`` when nothing is due."""
        store = django_store()
        queues = self.queues if self.queues is not None else list(djtasks_settings.QUEUES)
        rows = store.job_claim_many(now=self.now(), worker_id=self.worker_id, queues=queues, limit=1)
        if not rows:
            return None
        row = rows[0]
        if row["status"] == JobStatus.RUNNING:  # an expired job is cancelled by the claim, not run
            try:
                is_async = lookup(row["name"]).is_async
            except NotRegistered:
                is_async = False  # execute() records the failure
            run = self._run_async if is_async else self._run_sync
            outcome = run(row)
            store.job_finish_many(worker_id=self.worker_id, outcomes=[outcome])
        return JobResult(row["id"], name=row["name"]).refresh()

    def _run_sync(self, row: ClaimedJob) -> Outcome:
        return execute(row, clock=self.clock, manage_connections=False)

    def _run_async(self, row: ClaimedJob) -> Outcome:
        """An ``async def`` job, awaited on an event loop that ``async_to_sync`` runs for this thread: the job's
        thread-sensitive database calls (the async ORM, ``sync_to_async``) come back to this thread, so they run
        in the test's transaction (a worker runs them on its own loop and connection instead)."""
        if tracing.TRACER is not None:  # (execute() traces a sync job itself)
            return tracing.traced(row, lambda: self._await(row))
        return self._await(row)

    def _await(self, row: ClaimedJob) -> Outcome:
        prepared = prepare(row, self.worker_id, self.clock)
        if not isinstance(prepared, Prepared):
            return prepared  # it cannot run (undecodable arguments): the failure outcome

        async def whole() -> Outcome:
            return await invoke(row, prepared, None, self.clock)

        return conclude(row, prepared, async_to_sync(whole)())

    def run(self, *, max_jobs: int = MAX_JOBS_PER_RUN) -> list[JobResult]:
        """Run every due job, and those they make due (jobs they enqueue, retries due at once), until none is
        due; returns their results in the order they ran. Raises ``TooManyJobs`` past ``max_jobs``."""
        done: list[JobResult] = []
        while True:
            if len(done) >= max_jobs:
                if self.due():
                    raise TooManyJobs(
                        f"ran {len(done)} jobs and more are due: does a job enqueue or retry itself without end? "
                        "(raise max_jobs if this many is expected)"
                    )
                return done
            result = self.run_one()
            if result is None:
                return done
            done.append(result)

    # -- looking ----------------------------------------------------------------------------------------
    def enqueued(
        self, job: Job | str | None = None, *, status: str | None = JobStatus.QUEUED, queue: str | None = None
    ) -> list[EnqueuedJob]:
        """Jobs in the table, oldest first: by default those waiting (due or not); ``status=None`` for all."""
        rows = JobRow.objects.using(djtasks_settings.DATABASE).annotate(
            args_text=Cast("args", TextField()), kwargs_text=Cast("kwargs", TextField())
        )
        if job is not None:
            rows = rows.filter(name=_name(job))
        if status is not None:
            rows = rows.filter(status=status)
        if queue is not None:
            rows = rows.filter(queue=queue)
        return [
            EnqueuedJob(
                id=row.id,
                name=row.name,
                args=serialization.loads(row.args_text),
                kwargs=serialization.loads(row.kwargs_text),
                queue=row.queue,
                priority=row.priority,
                status=row.status,
                run_at=row.run_at,
                attempt=row.attempt,
                max_attempts=row.max_attempts,
            )
            for row in rows.order_by("enqueued_at", "id")
        ]

    def due(self) -> list[EnqueuedJob]:
        """Waiting jobs that ``run()`` would run now."""
        now = self.now()
        queues = self.queues
        return [j for j in self.enqueued() if j.run_at <= now and (queues is None or j.queue in queues)]

    def assert_enqueued(
        self,
        job: Job | str,
        *,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        count: int | None = None,
        **fields: Any,
    ) -> list[EnqueuedJob]:
        """Assert that ``job`` is waiting, with these ``args``/``kwargs`` (and ``queue=``, ``priority=``, any
        field of ``EnqueuedJob``) when given; ``count`` how many such. Returns the matching jobs."""
        wanted_args = list(args) if args is not None else None
        waiting = self.enqueued(job)
        matching = [
            j
            for j in waiting
            if (wanted_args is None or j.args == wanted_args)
            and (kwargs is None or j.kwargs == kwargs)
            and all(getattr(j, key) == value for key, value in fields.items())
        ]
        if not matching or (count is not None and len(matching) != count):
            wanted = {"args": wanted_args, "kwargs": kwargs, **fields}
            described = {k: v for k, v in wanted.items() if v is not None}
            seen = [f"{j.name}(args={j.args}, kwargs={j.kwargs}, queue={j.queue!r})" for j in waiting] or ["nothing"]
            expected = f"{count} job(s)" if count is not None else "a job"
            raise AssertionError(
                f"expected {expected} {_name(job)!r} enqueued with {described or 'any arguments'}; "
                f"found {len(matching)} matching; waiting: {', '.join(seen)}"
            )
        return matching

    def assert_not_enqueued(self, job: Job | str) -> None:
        """Assert that no ``job`` is waiting."""
        waiting = self.enqueued(job)
        if waiting:
            raise AssertionError(f"expected no {_name(job)!r} enqueued, found {len(waiting)}: {waiting}")


class JobsTestMixin:
    """For ``django.test.TestCase`` subclasses: ``self.jobs`` is a fresh ``JobRunner`` in every test."""

    jobs: JobRunner

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.jobs = JobRunner()
