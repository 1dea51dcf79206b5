"""The ``runworker`` supervisor: starts worker processes, replaces any that die or recycle, enforces hard
time limits and terminate requests by killing processes, runs the maintenance services, and stops the
processes on a signal.

Worker processes are forked from a fork server (``forkserver.py``) that the supervisor forks before it opens
any connection or starts any thread, so a new process is ready in milliseconds and no lock, thread or
database connection leaks into it; where that is not possible they are started with ``spawn`` (each imports
Django afresh). Each reports the jobs it starts and finishes on a pipe. The supervisor's loop never touches the database: the bookkeeper thread records what happened to the
jobs of processes that ended, and the maintenance thread runs the rescuer; so time limits are enforced
and processes restarted even while the database is away.

What happens to the jobs of a process that ends:

- it stopped by itself (warm or cold stop, recycling): it handed its unfinished jobs back and said so;
- the supervisor killed it on purpose: the overdue job gets ``TimeLimitExceeded`` (retried while attempts
  remain), a terminated job ends ``cancelled``, and its other jobs go back to the queue, attempt not counted;
- it died (a segfault in a job, ``os._exit``, the OOM killer, a SIGKILL): the jobs it had started (listed on
  its start board, or marked started in the database) are lost attempts (``WorkerLost``), re-queued while
  attempts remain; the jobs it had only claimed ahead go back to the queue uncharged. A replacement starts
  at once. Only a process that dies
  before it is ready is restarted with a growing pause, so a broken setup does not spin.

Signals: SIGTERM or SIGINT starts a warm stop (processes finish their jobs for up to ``--shutdown-timeout``,
then hand the rest back). A second one, or SIGQUIT, is a cold stop: processes hand their jobs back at once.
Processes still alive ``COLD_GRACE_S`` later are killed and their jobs handed back by the supervisor.
The exit code is 0 when every process stopped by itself.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import queue
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..maintenance.handoffs import Handoffs
from ..maintenance.pruner import Pruner
from ..maintenance.rescuer import Rescuer, RescueResult
from ..maintenance.runner import MaintenanceRunner
from ..store import Store
from .bookkeeper import Bookkeeper
from .children import SHUTDOWN, TERMINATE, TIME_LIMIT, Child, Kill, RunningJob, describe_exit
from .executor import report_rescued
from .forkserver import ForkServer, ForkServerUnavailable, reap_adopted
from .process import WorkerConfig, main
from .waits import WakePipe

if TYPE_CHECKING:  # imported only with --metrics-port: prometheus_client is an optional dependency
    from ..metrics.server import MetricsServer

logger = logging.getLogger("djtasks.supervisor")

RESTART_BACKOFF_S = 1.0  # first pause before restarting a process that died before it was ready
RESTART_BACKOFF_MAX_S = 30.0
STOP_GRACE_S = 10.0  # beyond the shutdown timeout, how long a warm stop waits before turning cold
COLD_GRACE_S = 10.0  # how long a cold stop waits before killing processes
BOOKKEEPING_TIMEOUT_S = 15.0  # at exit, how long to keep trying to record the fate of dead processes' jobs
TICK_S = 0.5
LOST_REASONS = {TIME_LIMIT: "time_limit", TERMINATE: "terminated"}  # djtasks_attempts_lost_total's reason label
BEAT_STOP_TIMEOUT_S = 10.0  # how long a stopping supervisor waits for its scheduler thread


class Supervisor:
    def __init__(
        self, config: WorkerConfig, processes: int, *, beat: bool = False, metrics: MetricsServer | None = None
    ) -> None:
        """``metrics``: the endpoint bound for ``--metrics-port`` (then ``config.metrics`` is on): it gets the
        worker processes' counts, and it is closed when the supervisor stops."""
        self.config = config
        self.metrics = metrics
        self.processes = processes
        self.beat = beat  # also run the periodic scheduler, in a thread of this process (runworker --beat)
        self._ctx = multiprocessing.get_context("spawn")
        self.forkserver: ForkServer | None = None
        self.children: dict[Any, Child] = {}  # worker id -> child
        self._restarts: dict[int, float] = {}  # slot -> monotonic time to start it
        self._backoff: dict[int, float] = {}
        self._signals = 0
        self._stopping = False
        self._cold = False
        self._stop_deadline = 0.0
        self._kill_deadline = 0.0
        self._exit_code = 0
        self._wake_pipe = WakePipe()
        self.bookkeeper = Bookkeeper(config.alias, wake=self._wake_pipe.wake)
        self.maintenance = MaintenanceRunner(config.alias)
        self.maintenance.add(Rescuer(self.maintenance.store))
        self.maintenance.add(Pruner(self.maintenance.store))
        self.maintenance.add(Handoffs(self.maintenance.store))

    # -- signals --------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if signum == signal.SIGQUIT:
            self._signals = max(self._signals, 2)
        self._wake_pipe.wake()

    def _handle_signals(self) -> None:
        if self._signals >= 1 and not self._stopping:
            logger.info(
                "supervisor: warm shutdown (running jobs get up to %.0f s; a second signal stops at once)",
                self.config.shutdown_timeout,
            )
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.config.shutdown_timeout + STOP_GRACE_S
            self._restarts.clear()
            for child in self.children.values():
                child.signal(signal.SIGTERM)
        if (self._signals >= 2 or (self._stopping and time.monotonic() > self._stop_deadline)) and not self._cold:
            logger.warning("supervisor: cold shutdown; worker processes hand their jobs back now")
            self._cold = True
            self._kill_deadline = time.monotonic() + COLD_GRACE_S
            for child in self.children.values():
                child.signal(signal.SIGQUIT)
        if self._cold and time.monotonic() > self._kill_deadline:
            for child in self.children.values():
                if child.kill_reason is None:
                    logger.warning("supervisor: killing worker process pid %s", child.pid)
                    child.kill(Kill(SHUTDOWN))
                    self._exit_code = 1

    # -- processes ------------------------------------------------------------------------------------
    def _start(self, slot: int) -> None:
        child = Child(self._ctx, self.config, slot, self.forkserver)
        self.children[child.worker_id] = child
        self.bookkeeper.worker_ids = tuple(self.children)
        if self.metrics is not None:
            child.on_metrics = self.metrics.add
            self.metrics.processes = len(self.children)
        logger.info("supervisor: started worker process %s (pid %s)", slot, child.pid)

    def _slot_filled(self, slot: int) -> bool:
        return any(c.slot == slot and c.retiring is None for c in self.children.values())

    def _schedule_restart(self, slot: int, child: Child) -> None:
        if self._stopping or self._slot_filled(slot) or slot in self._restarts:
            return
        if child.ready or child.retiring:
            self._backoff.pop(slot, None)
            pause = 0.0
        else:
            pause = min(max(self._backoff.get(slot, 0.0) * 2, RESTART_BACKOFF_S), RESTART_BACKOFF_MAX_S)
            self._backoff[slot] = pause
            logger.error("supervisor: worker process %s died before it was ready; restarting in %.0f s", slot, pause)
        self._restarts[slot] = time.monotonic() + pause

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self._restarts.items()):
            if due <= now and not self._stopping:
                del self._restarts[slot]
                self._start(slot)

    def _receive(self, ready: list[Any]) -> None:
        for child in list(self.children.values()):
            was_retiring = child.retiring
            if child.conn is not None and child.conn in ready:
                child.receive()
            if child.retiring and not was_retiring:
                logger.info(
                    "supervisor: worker process %s (pid %s) recycles: %s", child.slot, child.pid, child.retiring
                )
                self._schedule_restart(child.slot, child)

    def _reap(self) -> None:
        for child in list(self.children.values()):
            if child.process.exitcode is None:
                continue
            child.receive()
            child.process.join()
            if child.conn is not None:
                child.conn.close()
            del self.children[child.worker_id]
            self.bookkeeper.worker_ids = tuple(self.children)
            if self.metrics is not None:
                self.metrics.processes = len(self.children)
            self._account(child)
            self._schedule_restart(child.slot, child)

    def _account(self, child: Child) -> None:
        """Record what happened to the jobs of a process that ended (in the bookkeeper thread)."""
        exit_text = describe_exit(child.process.exitcode)
        worker_id, pid = child.worker_id, child.pid
        if child.kill_reason is not None:
            kill = child.kill_reason
            logger.warning("supervisor: worker process %s (pid %s) killed (%s)", child.slot, pid, kill.reason)

            def record_kill(store: Store) -> None:
                outcomes = kill.outcomes(pid, timezone.now())
                if outcomes:
                    written = store.job_finish_many(worker_id=worker_id, outcomes=outcomes)
                    kill.report(outcomes, written)
                    if self.metrics is not None:
                        self.metrics.lost(LOST_REASONS.get(kill.reason, kill.reason), len(written))
                released = store.job_release_many(now=timezone.now(), worker_id=worker_id, keep_ids=())
                store.worker_delete(id=worker_id)
                if released:
                    logger.info("supervisor: handed %d job(s) of pid %s back to the queue", len(released), pid)

            self.bookkeeper.submit(f"recording the jobs of killed pid {pid}", record_kill)
        elif child.stopped is True:
            logger.info("supervisor: worker process %s (pid %s) stopped (%s)", child.slot, pid, exit_text)
        elif child.stopped is False:
            logger.warning(
                "supervisor: worker process %s (pid %s) could not hand its jobs back; retrying", child.slot, pid
            )

            def release(store: Store) -> None:
                store.job_release_many(now=timezone.now(), worker_id=worker_id, keep_ids=())
                store.worker_delete(id=worker_id)

            self.bookkeeper.submit(f"handing back the jobs of pid {pid}", release)
        else:
            started = child.board.started()  # read now: the dead process can no longer change it
            logger.error(
                "supervisor: worker process %s (pid %s) died (%s) while running %d job(s) %s; their attempts count",
                child.slot,
                pid,
                exit_text,
                len(started),
                sorted(str(job_id) for job_id, _ in started),
            )
            reason = f"worker process pid {pid} died ({exit_text}) while running this job"

            def rescue(store: Store) -> None:
                rows = store.worker_rescue_many(
                    now=timezone.now(), worker_ids=[worker_id], reason=reason, started=started
                )
                result = RescueResult.from_rows(rows)
                if result.jobs:
                    logger.warning("supervisor: jobs of dead pid %s: %s", pid, result.describe())
                    report_rescued(rows)
                if self.metrics is not None:
                    self.metrics.lost("process_died", sum(1 for r in rows if r.get("job_id") and r.get("charged")))

            self.bookkeeper.submit(f"rescuing the jobs of dead pid {pid}", rescue)
        if self._stopping and child.stopped is None and child.kill_reason is None and child.ready:
            self._exit_code = 1  # it died instead of stopping (one that was not ready yet had no jobs)

    # -- limits and cancels ---------------------------------------------------------------------------
    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            overdue = child.overdue(now)
            if overdue and child.kill_reason is None:
                for job in overdue:
                    logger.error(
                        "supervisor: job %s %s (attempt %s) exceeded its time_limit of %g s; killing pid %s",
                        job.id,
                        job.name,
                        job.attempt,
                        job.time_limit,
                        child.pid,
                    )
                child.kill(Kill(TIME_LIMIT, overdue))

    def _terminate_requested(self) -> None:
        while True:
            try:
                request = self.bookkeeper.terminate_requests.get_nowait()
            except queue.Empty:
                return
            child = self.children.get(request["worker_id"])
            if child is None or child.kill_reason is not None:
                continue
            job = RunningJob(id=request["id"], attempt=request["attempt"])
            logger.warning("supervisor: job %s cancelled with terminate; killing pid %s", job.id, child.pid)
            child.kill(Kill(TERMINATE, [job]))

    # -- loop -----------------------------------------------------------------------------------------
    def _timeout(self) -> float:
        now = time.monotonic()
        candidates = [TICK_S]
        candidates += [d - now for c in self.children.values() if (d := c.next_deadline()) is not None]
        candidates += [due - now for due in self._restarts.values()]
        return max(0.0, min(candidates))

    def _start_beat(self) -> tuple[Any, threading.Thread]:
        from ..beat import run_in_thread

        return run_in_thread(
            alias=self.config.alias, listen=self.config.listen, reload_interval=self.config.poll_interval
        )

    def _start_forkserver(self) -> None:
        """Fork the fork server now, while this process has one thread and no connection (see forkserver.py)."""
        try:
            self.forkserver = ForkServer.start(functools.partial(main, self.config))
        except ForkServerUnavailable as exc:
            logger.info("supervisor: worker processes are spawned, not forked: %s", exc)

    def _reap_adopted(self) -> None:
        """Reap orphans adopted as subreaper (a subprocess a job left behind); never a worker or the fork server."""
        if self.forkserver is None:
            return
        self.forkserver.check()
        known = {c.pid for c in self.children.values() if c.pid is not None} | {self.forkserver.pid}
        for pid, code in reap_adopted(known):
            logger.info("supervisor: reaped adopted orphan pid %s (%s)", pid, describe_exit(code))

    def _start_metrics(self) -> bool:
        """Serve ``--metrics-port`` (after the fork server: no worker inherits its socket or thread); False if the
        port was taken since the command checked it: nothing else has started, and runworker exits."""
        from ..metrics.server import MetricsPortError

        assert self.metrics is not None
        try:
            self.metrics.start()
        except MetricsPortError as exc:
            logger.error(
                "supervisor: --metrics-port %s: cannot listen on %s:%s (%s); not starting",
                self.metrics.port,
                self.metrics.address,
                self.metrics.port,
                exc.strerror,
            )
            if self.forkserver is not None:
                self.forkserver.stop()
            return False
        return True

    def run(self) -> int:
        self._start_forkserver()  # first: before any thread or connection of this process
        if self.metrics is not None and not self._start_metrics():
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)
        self.bookkeeper.start()
        self.maintenance.start()
        beat = self._start_beat() if self.beat else None
        for slot in range(self.processes):
            self._start(slot)
        while self.children or not self._stopping:
            waitables = [self._wake_pipe.fileno()]
            for child in self.children.values():
                waitables += child.waitables()
            ready = wait(waitables, self._timeout())
            if self._wake_pipe.fileno() in ready:
                self._wake_pipe.drain()
            self._handle_signals()
            self._receive(ready)
            self._reap()
            self._enforce_time_limits()
            self._terminate_requested()
            self._start_due()
            self._reap_adopted()
        if self.forkserver is not None:
            self.forkserver.stop()
        self.maintenance.stop()
        if beat is not None:
            beat[0].stop()
            beat[1].join(BEAT_STOP_TIMEOUT_S)
        self.bookkeeper.drain(BOOKKEEPING_TIMEOUT_S)
        if self.metrics is not None:
            self.metrics.close()
        logger.info("supervisor: stopped")
        return self._exit_code
