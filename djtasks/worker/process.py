"""One worker process: a producer (main thread), an executor pool, a completer and a heartbeat.

Shutdown (SIGTERM or SIGINT) is warm: stop claiming, let running jobs finish for up to
``shutdown_timeout`` seconds, record their outcomes, then hand whatever still runs back to the queue
without counting the attempt, so nothing is lost and nothing stays ``running``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from .. import serialization, signals
from ..ids import uuid7
from .completer import Completer
from .db import CONNECTION_ERRORS, WorkerConnection
from .executor import execute
from .heartbeat import Heartbeat
from .producer import Producer

logger = logging.getLogger("djtasks.worker")

RELEASE_ATTEMPTS = 5  # tries to hand unfinished jobs back at shutdown before leaving them to rescue
FLUSH_TIMEOUT_S = 30.0  # how long shutdown waits for outcomes to reach the database


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


class WorkerProcess:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.id: UUID = uuid7()
        self.executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="djtasks-job")
        self.completer = Completer(self.id, config.alias)
        self.heartbeat = Heartbeat(self.id, config.heartbeat_interval, config.alias)
        self.producer = Producer(
            worker_id=self.id,
            queues=config.queues,
            slots=config.threads,
            submit=self._submit,
            poll_interval=config.poll_interval,
            listen=config.listen,
            alias=config.alias,
        )
        self._running: dict[UUID, int] = {}  # job id -> attempt, for jobs handed to the executor
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def _submit(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._running[row["id"]] = row["attempt"]
        self.executor.submit(self._run_one, row)

    def _run_one(self, row: dict[str, Any]) -> None:
        try:
            outcome = execute(row)
        except BaseException as exc:
            logger.exception("internal error running job %s", row["id"])
            from django.utils import timezone

            from .executor import failure_outcome

            outcome = failure_outcome(row, exc, timezone.now(), retry_in=None)
        self.completer.put(outcome)
        with self._lock:
            self._running.pop(row["id"], None)
            self._idle.notify_all()
        self.producer.slot_freed()

    def request_stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        if not self.producer.stopping.is_set():
            logger.info("worker %s: stopping (signal %s); finishing running jobs", self.id, signum)
        self.producer.stop()

    def _register(self) -> None:
        from django.utils import timezone

        registrar = WorkerConnection(self.config.alias, role="register")
        pause = 0.2
        while True:
            try:
                registrar.store.worker_register(
                    now=timezone.now(),
                    id=self.id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    queues=serialization.dumps(list(self.config.queues)),
                    concurrency=self.config.threads,
                )
                break
            except CONNECTION_ERRORS as exc:
                if self.producer.stopping.is_set():
                    raise
                logger.warning("cannot register worker (%s); retrying", exc)
                registrar.reset()
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
        registrar.close()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self._register()
        self.heartbeat.start()
        self.completer.start()
        signals.worker_started.send_robust(sender=None, worker_id=self.id, queues=self.config.queues)
        logger.info(
            "worker %s (pid %s) on queues %s with %d threads",
            self.id,
            os.getpid(),
            ",".join(self.config.queues),
            self.config.threads,
        )
        self.producer.run()
        signals.worker_stopping.send_robust(sender=None, worker_id=self.id)
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self._lock:
            self._idle.wait_for(lambda: not self._running, max(0.0, deadline - time.monotonic()))
            unfinished = dict(self._running)
        if unfinished:
            logger.warning(
                "worker %s: %d job(s) still running after %.0f s; releasing them to the queue",
                self.id,
                len(unfinished),
                self.config.shutdown_timeout,
            )
        self.completer.flush(FLUSH_TIMEOUT_S)
        db = WorkerConnection(self.config.alias, role="shutdown")
        for attempt in range(RELEASE_ATTEMPTS):
            try:
                if unfinished:
                    db.store.job_release_many(worker_id=self.id, ids=list(unfinished))
                db.store.worker_delete(id=self.id)
                break
            except CONNECTION_ERRORS as exc:
                logger.warning("shutdown: database unavailable (%s), attempt %d", exc, attempt + 1)
                db.reset()
                time.sleep(1.0)
        db.close()
        self.completer.stop()
        self.heartbeat.stop()
        self.completer.join(5)
        logger.info("worker %s stopped", self.id)


def main(config: WorkerConfig) -> None:
    """Entry point of a worker process started by the supervisor (multiprocessing, spawn)."""
    import django

    django.setup()
    from .logs import configure_logging

    configure_logging(config.log_level)
    code = WorkerProcess(config).run()
    logging.shutdown()
    # Job threads still running past the shutdown timeout were released to the queue; do not wait for them.
    os._exit(code)
