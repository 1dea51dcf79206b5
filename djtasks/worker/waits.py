"""How djtasks' loops wait: the backoff after losing the database, the wake-up pipe, and the LISTEN drain.

Written once here for the producer, the completer, the worker process's start and stop, the supervisor's
bookkeeper and loop, the maintenance runner and the beat loop.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable
from typing import Any

RECONNECT_START_S = 0.2  # first pause after losing the database; doubles on each failure ...
RECONNECT_MAX_S = 5.0  # ... up to this


class Backoff:
    """Pauses that double from ``start`` up to ``cap``; ``reset()`` after a success."""

    def __init__(self, start: float = RECONNECT_START_S, cap: float = RECONNECT_MAX_S) -> None:
        self.start, self.cap = start, cap
        self.pause = start

    def next(self) -> float:
        """The pause to take now (the next one doubles)."""
        pause = self.pause
        self.pause = min(pause * 2, self.cap)
        return pause

    def reset(self) -> None:
        self.pause = self.start


class WakePipe:
    """A self-pipe: ``wake()`` from any thread or a signal handler makes a ``select`` on ``fileno()`` return.

    Never closed while a late caller may still wake it (a closed descriptor number could by then belong to
    another file, such as a database socket), unless its owner knows nobody will.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        # BlockingIOError: the pipe is full, a wake-up is already pending. OSError: closed at exit.
        with contextlib.suppress(OSError):
            os.write(self._w, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._r, 4096):
                pass

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def drain_notifications(conn: Any, on_notify: Callable[[str], None] | None = None) -> None:
    """Read and discard the notifications waiting on a LISTENing psycopg connection: to djtasks a
    notification mostly means "look again"; ``on_notify(channel)``, if given, sees each one's channel."""
    pgconn = conn.pgconn
    pgconn.consume_input()
    while (notify := pgconn.notifies()) is not None:
        if on_notify is not None:
            on_notify(notify.relname.decode())


def wait_for_wake(
    pipe: WakePipe, conn: Any | None, timeout: float, on_notify: Callable[[str], None] | None = None
) -> None:
    """Sleep up to ``timeout`` seconds, until ``pipe`` is woken or ``conn`` (a LISTENing psycopg connection,
    or None) receives a notification; both are drained (``on_notify``: see ``drain_notifications``)."""
    watched = [pipe.fileno()] if conn is None else [pipe.fileno(), conn.fileno()]
    readable, _, _ = select.select(watched, [], [], timeout)
    if pipe.fileno() in readable:
        pipe.drain()
    if conn is not None and conn.fileno() in readable:
        drain_notifications(conn, on_notify)
