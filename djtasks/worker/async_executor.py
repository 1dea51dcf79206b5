"""Runs a worker process's ``async def`` jobs: one event loop in one thread, many jobs at once.

A thread per job would cap a process at ``--threads`` jobs even when they only wait (on HTTP, on
``asyncio.sleep``); on the loop a job that awaits costs a coroutine, so a process runs up to
``--async-concurrency`` of them (default 100) beside its job threads.

What a job does around its coroutine is the same as for a sync job and comes from ``executor``: the lookup,
the argument decoding, the signals, the outcome. The sync parts (signal receivers, Django's connection
clean-up after the job, a task's context read) run through ``sync_to_async(thread_sensitive=True)``, on the
same thread as the job's own async ORM calls, so a receiver may use the ORM and nothing blocking runs on
the loop.

Time limits: the hard limit is the supervisor's, as for every job (it kills the process, which also ends the
other jobs on its loop; they are handed back or rescued like those of job threads). The soft limit cancels
the job's coroutine (it sees ``asyncio.CancelledError`` at its current ``await`` and may clean up in
``finally``), and the attempt ends with ``SoftTimeLimitExceeded``, retried when ``retry_on`` allows.
A job that blocks the loop (a sync call without ``await``) delays every async job of its process, but not
the job threads, the heartbeat or the completer, which have threads of their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from uuid import UUID

from asgiref.sync import sync_to_async
from django import db
from django.utils import timezone

from .. import tracing
from ..exceptions import SoftTimeLimitExceeded
from ..rows import ClaimedJob, Outcome
from .outcomes import (
    JobRuntime,
    Prepared,
    conclude,
    error_outcome,
    failure_outcome,
    flush_progress,
    prepare,
    success_outcome,
    time_limits,
)

logger = logging.getLogger("djtasks.worker")

DEFAULT_ASYNC_CONCURRENCY = 100  # async jobs running at once per worker process


async def invoke(
    row: ClaimedJob, prepared: Prepared, runtime: JobRuntime | None, clock: Callable[[], datetime] | None = None
) -> Outcome:
    """Await the job's coroutine under its time limits; the outcome (dated by ``clock``), not yet concluded."""
    job = prepared.job
    hard, soft = time_limits(row, job)
    # The hard limit only: the job-thread soft limit injects an exception into a thread, which on the loop
    # would land in whichever coroutine runs next.
    wrapper = runtime.running(row, time_limit=hard, soft_time_limit=None) if runtime is not None else nullcontext()
    ctx = prepared.ctx
    try:
        with wrapper:
            coro = (
                job.func(ctx, *prepared.args, **prepared.kwargs)
                if ctx is not None
                else job.func(*prepared.args, **prepared.kwargs)
            )
            if soft is None:
                value = await coro
            else:
                limit = asyncio.timeout(soft)
                try:
                    async with limit:
                        value = await coro
                except TimeoutError:
                    if not limit.expired():
                        raise  # the job's own TimeoutError
                    logger.warning("job %s %s: soft time limit of %g s exceeded; cancelled", row["id"], job.name, soft)
                    raise SoftTimeLimitExceeded(f"soft time limit of {soft:g} s exceeded") from None
        return success_outcome(row, prepared, value, clock)
    except BaseException as exc:  # noqa: BLE001 - as for sync jobs, nothing a job raises escapes
        prepared.raised = exc
        return error_outcome(row, job, exc, clock)


def _after_job(row: ClaimedJob, prepared: Prepared, outcome: Outcome) -> Outcome:
    """On the thread-sensitive thread: signals, then Django's per-request connection hygiene."""
    try:
        flush_progress(prepared.ctx)
        return conclude(row, prepared, outcome)
    finally:
        db.reset_queries()
        db.close_old_connections()


def run_coroutine_here(row: ClaimedJob, prepared: Prepared, runtime: JobRuntime | None) -> Outcome:
    """Run an async job to completion in this (job) thread, on a loop of its own."""

    async def whole() -> Outcome:
        outcome = await invoke(row, prepared, runtime)
        return await sync_to_async(_after_job, thread_sensitive=True)(row, prepared, outcome)

    return asyncio.run(whole())


class AsyncJobs:
    """The event loop thread of a worker process. ``submit`` is called from the producer thread."""

    def __init__(
        self,
        concurrency: int,
        *,
        runtime: JobRuntime | None,
        worker_id: UUID | None,
        began: Callable[[ClaimedJob], ClaimedJob | None],
        ended: Callable[[ClaimedJob | None, Outcome | None, float], None],
    ) -> None:
        self.concurrency = concurrency
        self.runtime = runtime
        self.worker_id = worker_id
        self.began = began
        self.ended = ended
        self.loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones
        self._slots: asyncio.Semaphore | None = None
        self._thread = threading.Thread(target=self._run_loop, name="djtasks-async", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._slots = asyncio.Semaphore(self.concurrency)
        self.loop.run_forever()

    def submit(self, row: ClaimedJob) -> None:
        self.loop.call_soon_threadsafe(self._spawn, row)

    def _spawn(self, row: ClaimedJob) -> None:
        task = self.loop.create_task(self._run(row), name=f"djtasks-job-{row['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, queued: ClaimedJob) -> None:
        assert self._slots is not None
        async with self._slots:
            row = self.began(queued)  # the claim to run, listed as started; None: it must not start (stopping)
            if row is None:
                self.ended(None, None, 0.0)
                return
            started = time.perf_counter()
            try:
                if tracing.TRACER is None:
                    outcome = await self._attempt(row)
                else:
                    outcome = await tracing.atraced(row, lambda: self._attempt(row))
            except BaseException as exc:  # the loop must outlive any job
                logger.exception("internal error running async job %s", row["id"])
                outcome = failure_outcome(row, exc, timezone.now(), retry_in=None)
            self.ended(row, outcome, time.perf_counter() - started)

    async def _attempt(self, row: ClaimedJob) -> Outcome:
        prepared = await sync_to_async(prepare, thread_sensitive=True)(row, self.worker_id)
        if not isinstance(prepared, Prepared):
            return prepared
        outcome = await invoke(row, prepared, self.runtime)
        return await sync_to_async(_after_job, thread_sensitive=True)(row, prepared, outcome)

    def running(self) -> int:
        return len(self._tasks)
