"""One worker process: a producer (main thread), an executor pool, a completer, a heartbeat and the soft
time limits, reporting the jobs it runs to its supervisor.

How it stops:

- warm (SIGTERM, or its supervisor died): stop claiming, hand the jobs claimed ahead (not started) back to
  the queue at once, let running jobs finish for up to ``shutdown_timeout`` seconds, record their outcomes,
  then hand whatever still runs back to the queue without counting the attempt. Nothing is lost and nothing
  stays ``running``.
- cold (SIGQUIT; the supervisor sends it on a second signal): the same without waiting for running jobs.
- recycle (``max_jobs_per_child`` claimed, or ``max_memory_per_child`` exceeded): stop claiming and wait for
  the running jobs however long they take (they must not run twice), then exit; the supervisor has already
  started a replacement. A SIGTERM meanwhile turns it into a warm stop.

Every job the process holds is in its ledger (``ledger.py``), from the claim to the recorded outcome; a
job thread lists a job there as started (and on the start board its supervisor reads after a sudden death)
just before calling it, so a process that dies is charged an attempt only for jobs it had started.

Under a supervisor SIGINT is ignored: Ctrl-C reaches the whole process group, and the supervisor decides.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from .. import serialization, signals
from ..exceptions import NotRegistered
from ..ids import uuid7
from ..registry import registry
from ..rows import ClaimedJob, Outcome
from . import link
from .async_executor import DEFAULT_ASYNC_CONCURRENCY, AsyncJobs
from .completer import Completer
from .db import CONNECTION_ERRORS, WorkerConnection
from .executor import execute, failure_outcome, lookup
from .heartbeat import Heartbeat, cap_switch_interval
from .ledger import Ledger
from .limits import SoftLimiter
from .metering import JobMeter
from .pool import JobThreads
from .prefetch import Durations
from .producer import Producer, ledger_capacity
from .startboard import StartBoard
from .waits import Backoff

logger = logging.getLogger("djtasks.worker")

FLUSH_TIMEOUT_S = 30.0  # how long a warm stop waits for outcomes to reach the database
COLD_FLUSH_TIMEOUT_S = 3.0
RELEASE_TIMEOUT_S = 30.0  # how long a stop keeps trying to hand jobs back before leaving them to the rescuer
COLD_RELEASE_TIMEOUT_S = 5.0
EARLY_RELEASE_TIMEOUT_S = 2.0  # handing back the jobs claimed ahead at a stop; else the final release does it
HEARTBEAT_JOIN_S = 5.0  # a beat in progress when the stop deletes the worker row is waited for this long
WAIT_SLICE_S = 0.1  # the stop waits for running jobs in slices, to notice a later signal
MB = 1024 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    queues: tuple[str, ...]
    threads: int
    shutdown_timeout: float
    poll_interval: float
    listen: bool
    heartbeat_interval: float
    alias: str
    log_level: str = "INFO"
    max_jobs_per_child: int | None = None
    max_memory_per_child: float | None = None  # MB of resident memory
    async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY  # async def jobs running at once on the event loop
    metrics: bool = False  # count jobs and claims for the supervisor's metrics endpoint (runworker --metrics-port)


def clock() -> Callable[[], datetime]:
    """``timezone.now`` with ``USE_TZ`` read once (a worker process's settings do not change): Django's reads
    the lazy setting on every call, a third of its cost, and a job is dated three times."""
    if settings.USE_TZ:
        return partial(datetime.now, UTC)
    return datetime.now


def rss_mb() -> float:
    """This process's resident memory in MB (Linux ``/proc``; elsewhere the peak from ``getrusage``)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _JobScope:
    """Wraps one job function call: tells the supervisor it started and ended, arms the soft limit."""

    def __init__(self, process: WorkerProcess, row: ClaimedJob, hard: float | None, soft: float | None) -> None:
        self.process, self.row, self.hard, self.soft = process, row, hard, soft
        self.guard: Any = None

    def __enter__(self) -> None:
        row = self.row
        # The supervisor is told of a job on the pipe only to enforce its hard limit: which jobs a dead
        # process had started it reads from the start board, a terminate request from the database.
        if self.hard is None:
            if self.soft is not None:
                self.guard = self.process.soft_limits.arm(f"job {row['id']} {row['name']}", self.soft)
            return
        self.process.link.send(
            link.STARTED,
            id=str(row["id"]),
            attempt=row["attempt"],
            name=row["name"],
            max_attempts=row["max_attempts"],
            time_limit=self.hard,
        )
        if self.soft is not None:
            self.guard = self.process.soft_limits.arm(f"job {row['id']} {row['name']}", self.soft)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.guard is not None:
                self.guard.disarm()
        finally:
            if self.hard is not None:
                self.process.link.send(link.FINISHED, id=str(self.row["id"]), attempt=self.row["attempt"])


class WorkerProcess:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        worker_id: UUID | None = None,
        conn: Connection | None = None,
        parent_pid: int | None = None,
        board: StartBoard | None = None,
    ) -> None:
        """``board``: the start board shared with the supervisor (None without one)."""
        self.config = config
        self.id: UUID = worker_id or uuid7()
        self.supervised = conn is not None
        self.link = link.SupervisorLink(conn)
        self.ledger = Ledger(ledger_capacity(config.threads + config.async_concurrency), board)
        self.executor = JobThreads(config.threads, self._run_one)
        self.soft_limits = SoftLimiter()
        self.completer = Completer(
            self.id, config.alias, ledger=self.ledger, on_done=self._outcomes_recorded, resubmit=self._resubmit
        )
        self.heartbeat = Heartbeat(
            self.id,
            config.heartbeat_interval,
            config.alias,
            register=self._register_on,
            parent_pid=parent_pid,
            on_orphaned=self.request_stop,
        )
        self.durations = Durations()
        self.clock = clock()  # dates a job's start and outcome
        self.producer = Producer(
            worker_id=self.id,
            queues=config.queues,
            slots=config.threads,
            submit=self._submit,
            poll_interval=config.poll_interval,
            listen=config.listen,
            ledger=self.ledger,
            alias=config.alias,
            budget=config.max_jobs_per_child,
            durations=self.durations,
            extra_slots=self._async_slots,
        )
        self._stop_at: float | None = None  # monotonic time of the first stop request
        self._cold = False
        self.recycle_reason: str | None = None
        self.async_jobs: AsyncJobs | None = None
        self._async_unfinished = 0  # async jobs handed to the event loop and not finished
        self._async_lock = threading.Lock()
        # Only under a supervisor serving metrics; else None, and each hook below costs one `is not None`.
        self.meter: JobMeter | None = None
        if config.metrics and self.supervised:
            self.meter = self.producer.meter = JobMeter(lambda delta: self.link.send(link.METRICS, delta=delta))

    @property
    def jobs_done(self) -> int:
        return self.ledger.done

    # -- running jobs ---------------------------------------------------------------------------------
    def running(self, row: ClaimedJob, *, time_limit: float | None, soft_time_limit: float | None) -> _JobScope:
        """``JobRuntime`` for the executor."""
        return _JobScope(self, row, time_limit, soft_time_limit)

    def _submit(self, rows: list[ClaimedJob]) -> None:
        if self.ledger.claim(rows):
            self.completer.wake()  # it sleeps for good while the ledger is empty; start marks may now fall due
        self._resubmit(rows)

    def _resubmit(self, rows: list[ClaimedJob]) -> None:
        for row in rows:
            job = registry.find(row["name"])
            if job is None:  # a django.tasks task not imported yet (or a bad name: a job thread fails it)
                with contextlib.suppress(NotRegistered):
                    job = lookup(row["name"])
            if job is not None and job.is_async:
                with self._async_lock:
                    self._async_unfinished += 1
                self._async_jobs().submit(row)
            else:
                self.executor.submit(row)

    def _async_slots(self) -> int:
        """Slots the producer may claim beyond the threads: as many as async jobs are unfinished, and as many
        again, up to ``async_concurrency``. The async jobs in flight cancel out of the count, so the threads'
        share stays theirs; the allowance doubles claim by claim while the queue hands out async jobs (100
        running after a handful of claims) and is nothing for a queue of sync jobs, whose jobs are then never
        claimed ahead of the threads (the rule a process holds without async jobs). Sync jobs claimed beside
        async ones may wait for a thread, at most as many as async jobs are in flight."""
        unfinished = self._async_unfinished
        return min(self.config.async_concurrency, 2 * unfinished) if unfinished else 0

    def _async_jobs(self) -> AsyncJobs:
        """The event loop, started with the first async job."""
        if self.async_jobs is None:
            self.async_jobs = AsyncJobs(
                self.config.async_concurrency,
                runtime=self,
                worker_id=self.id,
                began=self._job_began,
                ended=self._async_job_ended,
            )
        return self.async_jobs

    def _async_job_ended(self, row: ClaimedJob | None, outcome: Outcome | None, seconds: float) -> None:
        with self._async_lock:
            self._async_unfinished -= 1
        if row is not None and outcome is not None:
            self._job_ended(row, outcome, seconds)

    def _run_one(self, queued: ClaimedJob) -> None:
        row = self._job_began(queued)
        if row is None:
            return  # stopping: a job claimed ahead is handed back, not started
        started = time.perf_counter()
        try:
            outcome = execute(row, runtime=self, clock=self.clock)
        except BaseException as exc:
            logger.exception("internal error running job %s", row["id"])
            outcome = failure_outcome(row, exc, self.clock(), retry_in=None)
        self._job_ended(row, outcome, time.perf_counter() - started)

    def _job_began(self, queued: ClaimedJob) -> ClaimedJob | None:
        """The claim to run (claimed anew: the new one), listed as started; None if it must not start."""
        row = self.ledger.start(queued["id"], self.clock())
        if self.meter is not None and row is not None:
            self.meter.started(row["queue"], row["name"])
        return row

    def _job_ended(self, row: ClaimedJob, outcome: Outcome, seconds: float) -> None:
        self.durations.observe(row["name"], seconds)
        if self.meter is not None:
            self.meter.ended(row["queue"], row["name"], outcome["status"], seconds)
        outcome["started_at"] = self.ledger.started_at(row["id"])
        flow = self.producer.flow
        # A limited queue's slot frees for the whole fleet: wake its workers once the outcome is written.
        wake = (flow.notify or flow.job_limits) and flow.wakes_others(row)
        if wake:
            outcome["notify"] = wake
            self.completer.wakes = True
        unfinished = self.ledger.finish(row["id"])  # before put(): a finished job gets no start mark
        self.completer.put(outcome)
        if wake or unfinished == self.producer.low_water_mark:
            # The jobs claimed ahead are running low: claim the next batch now. Or a limited job ended:
            # limited jobs are never claimed ahead, so its thread is idle until the producer claims.
            self.producer.wake()
        limit = self.config.max_memory_per_child
        if limit is not None and (used := rss_mb()) > limit:
            self.recycle(f"memory {used:.0f} MB > --max-memory-per-child {limit:g} MB")

    def _outcomes_recorded(self, n: int) -> None:
        self.producer.wake()  # their jobs left the ledger: room to claim

    # -- stopping -------------------------------------------------------------------------------------
    def recycle(self, reason: str) -> None:
        """Stop claiming, finish the running jobs, exit; the supervisor starts a replacement now."""
        if self.recycle_reason is None and self._stop_at is None:
            self.recycle_reason = reason
            logger.info("worker %s: recycling after %d job(s): %s", self.id, self.jobs_done, reason)
            self.link.send(link.RECYCLING, reason=reason)
        self.producer.stop()

    def request_stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
            logger.info("worker %s: stopping (signal %s); finishing running jobs", self.id, signum)
        self.producer.stop()

    def request_cold_stop(self, signum: int = signal.SIGQUIT, frame: Any = None) -> None:
        if not self._cold:
            logger.warning("worker %s: cold stop (signal %s); handing running jobs back", self.id, signum)
        self._cold = True
        self.request_stop(signum)

    # -- registration ---------------------------------------------------------------------------------
    def _register_on(self, db: WorkerConnection) -> None:
        db.store.worker_register(
            now=timezone.now(),
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=serialization.dumps(list(self.config.queues)),
            concurrency=self.config.threads,
        )

    def _register(self) -> bool:
        """Register, retrying while the database is away; False if told to stop before it could."""
        registrar = WorkerConnection(self.config.alias, role="register")
        backoff = Backoff()
        try:
            while True:
                try:
                    self._register_on(registrar)
                    return True
                except CONNECTION_ERRORS as exc:
                    if self.producer.stopping.is_set():
                        logger.warning("worker %s: stopping before it could register (%s)", self.id, exc)
                        return False
                    pause = backoff.next()
                    logger.warning("cannot register worker (%s); retrying in %.1f s", exc, pause)
                    registrar.reset()
                    self.producer.stopping.wait(pause)
        finally:
            registrar.close()

    # -- main -----------------------------------------------------------------------------------------
    def run(self, early_signals: list[int] | None = None) -> int:
        """Work until stopped; ``early_signals`` arrived while the process was still starting."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGQUIT, self.request_cold_stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN if self.supervised else self.request_stop)
        for signum in early_signals or ():
            (self.request_cold_stop if signum == signal.SIGQUIT else self.request_stop)(signum)
        cap_switch_interval()
        if not self._register():
            self.link.send(link.STOPPED, released=True)  # it never claimed anything
            return 0
        self.link.send(link.READY)
        if self.meter is not None:
            self.meter.start()
        self.heartbeat.start()
        self.completer.start()
        self.soft_limits.start()
        signals.worker_started.send_robust(sender=None, worker_id=self.id, queues=self.config.queues)
        logger.info(
            "worker %s (pid %s) on queues %s with %d threads",
            self.id,
            os.getpid(),
            ",".join(self.config.queues),
            self.config.threads,
        )
        self.producer.run()
        if self.producer.exhausted:
            self.recycle(f"claimed --max-jobs-per-child {self.config.max_jobs_per_child} jobs")
        signals.worker_stopping.send_robust(sender=None, worker_id=self.id)
        self._shutdown()
        return 0

    def _wait_for_jobs(self) -> int:
        """Wait for running jobs as the stop mode allows; returns how many still run."""
        while self.ledger.running and not self._cold:
            if self._stop_at is not None and time.monotonic() >= self._stop_at + self.config.shutdown_timeout:
                break
            self.ledger.wait(lambda ledger: ledger.running == 0, WAIT_SLICE_S)  # in slices, to notice a signal
        return self.ledger.running

    def _shutdown(self) -> None:
        # Not in the signal handlers: they run on the main thread, which may hold the ledger's lock.
        claimed_ahead = self.ledger.waiting
        self.ledger.stop_starting()
        if claimed_ahead:
            # They never started: hand them back now, for other workers, rather than after the running jobs.
            self._release(keep_ids=self.ledger.known_ids(), deadline=time.monotonic() + EARLY_RELEASE_TIMEOUT_S)
        unfinished = self._wait_for_jobs()
        if unfinished:
            logger.warning(
                "worker %s: %d job(s) still running (%s); releasing them to the queue",
                self.id,
                unfinished,
                "cold stop" if self._cold else f"after {self.config.shutdown_timeout:.0f} s",
            )
        self.completer.flush(COLD_FLUSH_TIMEOUT_S if self._cold else FLUSH_TIMEOUT_S)
        # The heartbeat stops before the release deletes the worker row: a beat after that would find no row
        # and register this leaving worker again (a ghost row until the rescuer declares it dead).
        self.heartbeat.stop()
        self.heartbeat.join(HEARTBEAT_JOIN_S)
        released = self._release(
            keep_ids=(), deadline=time.monotonic() + (COLD_RELEASE_TIMEOUT_S if self._cold else RELEASE_TIMEOUT_S)
        )
        if self.meter is not None:
            self.meter.stop()  # ships the last counts before the goodbye
        self.link.send(link.STOPPED, released=released)
        self.completer.stop()
        self.soft_limits.stop()
        self.completer.join(5)
        logger.info("worker %s stopped after %d job(s)", self.id, self.jobs_done)

    def _release(self, *, keep_ids: set[UUID] | tuple[()], deadline: float) -> bool:
        """Hand back this worker's running rows but ``keep_ids`` (attempt not counted); with none kept, also
        delete the worker row (it leaves). If the database stays away past ``deadline``, False: the supervisor
        keeps trying (or, without one, the rescuer does it later)."""
        db = WorkerConnection(self.config.alias, role="shutdown")
        backoff = Backoff(cap=2.0)
        try:
            while True:
                try:
                    db.store.job_release_many(now=timezone.now(), worker_id=self.id, keep_ids=keep_ids)
                    if not keep_ids:
                        db.store.worker_delete(id=self.id)
                    return True
                except CONNECTION_ERRORS as exc:
                    db.reset()
                    pause = backoff.next()
                    if time.monotonic() + pause > deadline:
                        logger.error("worker %s: database unavailable at shutdown (%s)", self.id, exc)
                        return False
                    logger.warning("shutdown: database unavailable (%s); retrying in %.1f s", exc, pause)
                    time.sleep(pause)
        finally:
            db.close()


def main(
    config: WorkerConfig,
    worker_id: UUID | None = None,
    conn: Connection | None = None,
    parent_pid: int | None = None,
    board: StartBoard | tuple[int, Any] | None = None,
) -> None:
    """Entry point of a worker process started by the supervisor: forked by its fork server (``forkserver``,
    Django already set up) or spawned (``multiprocessing``); ``board`` is the start board, or when spawned its
    ``(capacity, shared buffer)``."""
    # A stop signal during start-up (Django setup takes a while) is kept and acted on once running, so
    # the process still stops cleanly rather than dying on the default action.
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, lambda signum, frame: early.append(signum))
    if conn is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import django

    django.setup()  # a forked process inherits Django set up: then this only configures logging again
    from .logs import configure_logging

    configure_logging(config.log_level)
    start_board = StartBoard(*board) if isinstance(board, tuple) else board
    code = WorkerProcess(config, worker_id=worker_id, conn=conn, parent_pid=parent_pid, board=start_board).run(early)
    logging.shutdown()
    # Job threads still running past the shutdown timeout were released to the queue; do not wait for them.
    os._exit(code)
