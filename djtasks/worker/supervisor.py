"""The ``runworker`` supervisor: starts worker processes, replaces any that die, stops them on a signal.

Worker processes are started with the ``spawn`` method: each imports Django afresh, so no lock, thread or
database connection of the supervisor leaks into them.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from .process import WorkerConfig, main

logger = logging.getLogger("djtasks.supervisor")

RESTART_BACKOFF_S = 1.0  # a process that dies within this long of starting is restarted after a pause
RESTART_BACKOFF_MAX_S = 30.0
STOP_GRACE_S = 10.0  # beyond the shutdown timeout, how long to wait before killing a process
TICK_S = 0.5


class Supervisor:
    def __init__(self, config: WorkerConfig, processes: int, *, beat: bool = False) -> None:
        self.config = config
        self.processes = processes
        self.beat = beat  # also run the periodic scheduler, in a thread of this process (runworker --beat)
        self._ctx = multiprocessing.get_context("spawn")
        self._children: dict[int, tuple[BaseProcess, float]] = {}  # slot -> (process, started at)
        self._backoff: dict[int, float] = {}
        self._stop = threading.Event()
        self._signals = 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "supervisor: signal %s, warm shutdown (waiting up to %.0f s for running jobs)",
                signum,
                self.config.shutdown_timeout,
            )
        else:
            logger.warning("supervisor: second signal %s, stopping now", signum)
        self._stop.set()

    def _start(self, slot: int) -> None:
        proc = self._ctx.Process(target=main, args=(self.config,), name=f"djtasks-worker-{slot}", daemon=False)
        proc.start()
        self._children[slot] = (proc, time.monotonic())
        logger.info("supervisor: started worker process %s (pid %s)", slot, proc.pid)

    def _reap(self) -> None:
        for slot, (proc, started) in list(self._children.items()):
            if proc.is_alive():
                continue
            proc.join()
            lived = time.monotonic() - started
            logger.error(
                "supervisor: worker process %s (pid %s) exited with %s after %.1f s; restarting",
                slot,
                proc.pid,
                proc.exitcode,
                lived,
            )
            pause = self._backoff.get(slot, 0.0)
            pause = (
                min(max(pause * 2, RESTART_BACKOFF_S), RESTART_BACKOFF_MAX_S) if lived < RESTART_BACKOFF_S * 5 else 0.0
            )
            self._backoff[slot] = pause
            if pause:
                self._stop.wait(pause)
            if not self._stop.is_set():
                self._start(slot)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._start(slot)
        beat = self._start_beat() if self.beat else None
        while not self._stop.wait(TICK_S):
            self._reap()
        if beat is not None:
            beat[0].stop()
            beat[1].join(STOP_GRACE_S)
        return self._stop_children()

    def _start_beat(self) -> tuple[Any, threading.Thread]:
        from ..beat import run_in_thread

        return run_in_thread(
            alias=self.config.alias, listen=self.config.listen, reload_interval=self.config.poll_interval
        )

    def _stop_children(self) -> int:
        for proc, _ in self._children.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the process's own warm shutdown
        deadline = time.monotonic() + self.config.shutdown_timeout + STOP_GRACE_S
        signals_seen = self._signals
        for proc, _ in self._children.values():
            while proc.is_alive() and time.monotonic() < deadline:
                proc.join(TICK_S)
                if self._signals > signals_seen:  # another signal: do not wait any longer
                    deadline = 0.0
        code = 0
        for proc, _ in self._children.values():
            if proc.is_alive():
                logger.warning("supervisor: killing worker process pid %s", proc.pid)
                proc.kill()
                proc.join()
                code = 1
        logger.info("supervisor: stopped")
        return code
