"""Soft time limits: raise ``SoftTimeLimitExceeded`` inside a job thread once its soft limit passes.

Jobs run in threads, and Python delivers signals only to the main thread, so the exception is injected with
``PyThreadState_SetAsyncExc``: it is raised in the job's thread the next time that thread executes Python
bytecode. A thread blocked in a C call (``time.sleep``, a socket read, a long computation inside a C
extension) sees it only when the call returns; the hard ``time_limit``, enforced by the supervisor by killing
the process, is the backstop for those.

Each running job with a soft limit holds a ``SoftLimitGuard``. Injection and disarming take the guard's lock,
and disarming clears an exception that was injected but not yet raised, so the exception can only surface
inside the job's own code, never in the worker code that runs after it.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import threading
import time

from ..exceptions import SoftTimeLimitExceeded

logger = logging.getLogger("djtasks.worker")


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
    return int(changed)


class SoftLimitGuard:
    """One running job's soft limit, armed in the job's thread."""

    def __init__(self, label: str, seconds: float) -> None:
        self.label = label
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.thread_id = threading.get_ident()
        self.fired = False
        self._active = True
        self._lock = threading.Lock()

    def fire(self) -> None:
        """From the limiter thread: raise in the job's thread if the job is still running."""
        with self._lock:
            if self._active and not self.fired:
                self.fired = True
                logger.warning(
                    "%s: soft time limit of %g s exceeded; raising SoftTimeLimitExceeded", self.label, self.seconds
                )
                _set_async_exc(self.thread_id, SoftTimeLimitExceeded)

    def disarm(self) -> None:
        """From the job's thread, when the job's function returned or raised."""
        with self._lock:
            self._active = False
            if self.fired:
                _set_async_exc(self.thread_id, None)  # drop it if it has not been raised yet


class SoftLimiter(threading.Thread):
    """Fires each armed guard at its deadline."""

    def __init__(self) -> None:
        super().__init__(name="djtasks-soft-limits", daemon=True)
        self._heap: list[tuple[float, int, SoftLimitGuard]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False

    def arm(self, label: str, seconds: float) -> SoftLimitGuard:
        guard = SoftLimitGuard(label, seconds)
        with self._cond:
            heapq.heappush(self._heap, (guard.deadline, next(self._seq), guard))
            self._cond.notify()
        return guard

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopping:
                    return
                _, _, guard = heapq.heappop(self._heap)
            guard.fire()
