"""The supervisor's handle on one worker process: the process, the pipe it reports on, the start board it
lists started jobs on, the jobs with a time limit it runs, and, when the supervisor kills it on purpose, why."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any
from uuid import UUID

from ..exceptions import NotRegistered, TimeLimitExceeded
from ..ids import uuid7
from ..rows import JobAttempt, Outcome
from . import link
from .executor import cancelled_outcome, failure_outcome, lookup, report
from .forkserver import ForkedProcess, ForkServer, ForkServerUnavailable
from .metering import MeterDelta
from .process import WorkerConfig, main
from .producer import ledger_capacity
from .startboard import StartBoard

logger = logging.getLogger("djtasks.supervisor")

TIME_LIMIT = "time limit"
TERMINATE = "terminate"
SHUTDOWN = "shutdown"


@dataclass
class RunningJob:
    id: UUID
    attempt: int
    name: str = ""
    max_attempts: int = 1
    time_limit: float | None = None
    deadline: float | None = None  # supervisor's monotonic clock


@dataclass
class Kill:
    """Why the supervisor killed a process: these jobs get an outcome, its other jobs go back to the queue."""

    reason: str
    jobs: list[RunningJob] = field(default_factory=list)
    raised: dict[UUID, BaseException] = field(default_factory=dict)  # by job id, for the signals

    def outcomes(self, pid: int | None, now: datetime) -> list[Outcome]:
        found: list[Outcome] = []
        for job in self.jobs:
            row: JobAttempt = {"id": job.id, "attempt": job.attempt}  # all an outcome needs of its job
            if self.reason == TIME_LIMIT:
                exc = TimeLimitExceeded(
                    f"ran past its time_limit of {job.time_limit:g} s; its worker process (pid {pid}) was killed"
                )
                self.raised[job.id] = exc
                found.append(failure_outcome(row, exc, now, retry_in=_retry_in(job, exc)))
            elif self.reason == TERMINATE:
                found.append(cancelled_outcome(row, f"terminated on request: worker process pid {pid} was killed", now))
        return found

    def report(self, outcomes: list[Outcome], written: set[UUID]) -> None:
        """Send the attempt signals of the outcomes that were recorded (``written``), in the supervisor: the
        process that ran the jobs is gone."""
        names = {job.id: job.name for job in self.jobs}
        for outcome in outcomes:
            if outcome["id"] not in written:
                continue
            name = names[outcome["id"]]
            try:
                sender: Any = lookup(name)
            except NotRegistered:
                sender = name
            try:
                report(sender, outcome, outcome, self.raised.get(outcome["id"]))
            except Exception:  # signals must not stop the supervisor's bookkeeping
                logger.exception("job %s: could not send its signals", outcome["id"])


def _retry_in(job: RunningJob, exc: BaseException) -> float | None:
    """The job's own retry policy applied to a time limit (None: no retry)."""
    try:
        definition = lookup(job.name)
    except NotRegistered:
        return None
    if not definition.should_retry(exc, job.attempt, job.max_attempts):
        return None
    return definition.retry_in(job.attempt)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Child:
    """One worker process, forked by the fork server (``forkserver``) or, without one, started with ``spawn``;
    it reports on ``conn``."""

    def __init__(
        self, ctx: SpawnContext, config: WorkerConfig, slot: int, forkserver: ForkServer | None = None
    ) -> None:
        self.slot = slot
        self.worker_id = uuid7()
        capacity = ledger_capacity(config.threads + config.async_concurrency)
        self.process: ForkedProcess | SpawnProcess
        self.conn: Connection | None
        forked = None
        if forkserver is not None and forkserver.alive:
            with contextlib.suppress(ForkServerUnavailable):  # it said why; spawned instead
                forked = forkserver.fork_worker(self.worker_id, capacity)
        if forked is not None:
            self.process, self.conn, self.board = forked
        else:
            reader, writer = ctx.Pipe(duplex=False)
            self.board = StartBoard.shared(ctx, capacity)
            self.process = ctx.Process(
                target=main,
                args=(config, self.worker_id, writer, os.getpid(), (self.board.capacity, self.board.buffer)),
                name=f"djtasks-worker-{slot}",
                daemon=False,
            )
            self.process.start()
            writer.close()
            self.conn = reader
        self.started = time.monotonic()
        self.ready = False
        self.retiring: str | None = None  # why it recycles
        self.stopped: bool | None = None  # said goodbye; True if it handed back its jobs itself
        self.jobs: dict[UUID, RunningJob] = {}  # jobs with a time limit, as reported on the pipe
        self.kill_reason: Kill | None = None
        self.jobs_done = 0
        self.on_metrics: Callable[[MeterDelta], None] | None = None  # the supervisor's totals (--metrics-port)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def waitables(self) -> list[Any]:
        return [self.conn, self.process.sentinel] if self.conn is not None else [self.process.sentinel]

    def receive(self) -> None:
        """Read every message waiting on the pipe."""
        while self.conn is not None:
            try:
                if not self.conn.poll():
                    return
                kind, fields = self.conn.recv()
            except (EOFError, OSError):
                self.conn.close()
                self.conn = None
                return
            self._handle(kind, fields)

    def _handle(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == link.STARTED:
            job_id = UUID(fields["id"])
            limit = fields.get("time_limit")
            self.jobs[job_id] = RunningJob(
                id=job_id,
                attempt=fields["attempt"],
                name=fields["name"],
                max_attempts=fields["max_attempts"],
                time_limit=limit,
                deadline=time.monotonic() + limit if limit else None,
            )
        elif kind == link.FINISHED:
            job = self.jobs.get(UUID(fields["id"]))
            if job is not None and job.attempt == fields["attempt"]:
                del self.jobs[job.id]
                self.jobs_done += 1
        elif kind == link.METRICS:
            if self.on_metrics is not None:
                self.on_metrics(fields["delta"])
        elif kind == link.READY:
            self.ready = True
        elif kind == link.RECYCLING:
            self.retiring = fields.get("reason") or "recycling"
        elif kind == link.STOPPED:
            self.stopped = bool(fields.get("released"))

    def next_deadline(self) -> float | None:
        deadlines = [job.deadline for job in self.jobs.values() if job.deadline is not None]
        return min(deadlines) if deadlines else None

    def overdue(self, now: float) -> list[RunningJob]:
        return [job for job in self.jobs.values() if job.deadline is not None and job.deadline <= now]

    def kill(self, reason: Kill) -> None:
        """SIGKILL the process; what happens to its jobs is decided when the supervisor reaps it."""
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.process.exitcode is None:
            self.process.kill()

    def signal(self, signum: int) -> None:
        if self.process.exitcode is None and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
