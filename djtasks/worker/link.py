"""What a worker process tells its supervisor, over a one-way pipe: which jobs it runs, and when it retires.

The supervisor needs this to kill the process running an overdue job (hard time limits) and to start a
replacement when a process recycles; which jobs a dead process had started it reads from the start board
(``startboard.py``), which costs no message per job. Messages are tiny tuples
(below the pipe's atomic write size), sent under a lock because several job threads report; a metrics
shipment can be larger, which is safe because only this process writes to its pipe and the lock keeps
messages whole.
The database stays the source of truth: a lost message only delays a time limit, never loses a job.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger("djtasks.worker")

READY = "ready"  # registered; (no fields)
STARTED = "started"  # a job began: id, attempt, name, max_attempts, time_limit
FINISHED = "finished"  # a job's function returned or raised: id, attempt
RECYCLING = "recycling"  # no more claims; exits once its jobs are done: reason
STOPPED = "stopped"  # about to exit; released: whether it handed back its jobs and deleted its row
METRICS = "metrics"  # counts since the last shipment (runworker --metrics-port only): delta, a MeterDelta


class SupervisorLink:
    """The worker process's end of the pipe; a no-op without a supervisor (or once it is gone)."""

    def __init__(self, conn: Connection | None) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message; never raises (a job must not fail because its supervisor is gone)."""
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send((kind, fields))
            except Exception as exc:  # noqa: BLE001 - the supervisor died: the process notices and stops on its own
                logger.warning("cannot report to the supervisor (%r); no more reports", exc)
                self._conn = None
