"""Where a loop LISTENs for its wake-ups: on its own connection, on a direct one of its own, or nowhere (polling).

``LISTEN`` is session state: through a transaction-mode pooler (PgBouncer's ``pool_mode = transaction``) it lands
on whichever server connection the pooler lent for that statement, and the notifications go to whoever borrows
that connection next, or nowhere. So, as ``DjtasksSettings.listen_alias`` decides:

- ``DJTASKS["LISTEN_DATABASE"]`` names a direct alias: the loop LISTENs on a connection of its own to it, used
  for nothing else (one more connection per worker process and per scheduler);
- else, unless ``DATABASE`` goes through a transaction-mode pooler (``POOL_MODE``), on the loop's own connection;
- else nowhere: the loop polls every ``POLL_INTERVAL``, as it also does as a fallback when listening.

The dedicated connection never stops the loop: when it cannot be opened, or breaks, the loop polls and the
listener tries again after a pause; when it turns out to reach a pooler too (its server pid differs from the
one the connection was told at start-up, see ``connection_backend_pid``), the listener says so and gives up
listening for the life of the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.utils.connection import ConnectionDoesNotExist

from ..conf import DjtasksSettings, djtasks_settings
from ..store import Store
from .db import CONNECTION_ERRORS, WorkerConnection
from .waits import WakePipe, wait_for_wake

logger = logging.getLogger("djtasks.worker")

RETRY_S = 30.0  # after the dedicated LISTEN connection failed, poll this long before opening it again


def through_pooler(db: WorkerConnection) -> bool:
    """Whether ``db`` reaches PostgreSQL through a pooler: the backend pid the connection was given at start-up
    (a pooler makes up its own cancel key) is not the pid of the server process running its statements."""
    return db.connection.info.backend_pid != db.store.connection_backend_pid()


def wakeup_summary(conf: DjtasksSettings) -> tuple[int, str]:
    """The start-up message saying how workers and schedulers learn of new work: ``(log level, text)``."""
    poll = f"{conf.POLL_INTERVAL:g} s"
    if not conf.LISTEN:
        return logging.INFO, f"LISTEN is off: polling for new jobs every {poll} (DJTASKS['POLL_INTERVAL'])"
    if conf.listen_alias is None:
        return logging.WARNING, (
            f"DJTASKS['DATABASE'] ({conf.DATABASE!r}) goes through a transaction-mode pooler (DJTASKS['POOL_MODE']), "
            f"where LISTEN cannot work, and no DJTASKS['LISTEN_DATABASE'] is set: polling for new jobs every {poll}; "
            "set LISTEN_DATABASE to a direct (unpooled) alias to be woken at once"
        )
    if conf.LISTEN_DATABASE is not None:
        return logging.INFO, (
            f"listening for new jobs on a direct connection of its own to {conf.LISTEN_DATABASE!r} "
            f"(DJTASKS['LISTEN_DATABASE']); polling every {poll} as a fallback"
        )
    return logging.INFO, f"listening for new jobs on {conf.DATABASE!r}; polling every {poll} as a fallback"


def probe_database(conf: DjtasksSettings) -> list[str]:
    """Start-up warnings from looking at the connections themselves (once per ``runworker`` / ``runbeat``): a
    ``DATABASE`` behind a pooler ``POOL_MODE`` does not mention, a ``LISTEN_DATABASE`` behind one. A database
    that cannot be reached yet says nothing here: the loops wait for it."""
    found = []
    aliases = {conf.DATABASE} if conf.POOL_MODE is None else set()
    if conf.LISTEN and conf.LISTEN_DATABASE is not None:
        aliases.add(conf.LISTEN_DATABASE)
    for alias in sorted(aliases):
        try:
            db = WorkerConnection(alias, role="probe")
        except ConnectionDoesNotExist:
            continue  # the listener says so
        try:
            pooled = through_pooler(db)
        except CONNECTION_ERRORS:
            continue
        finally:
            db.close()
        if pooled and alias == conf.LISTEN_DATABASE:
            found.append(listen_pooled_message(alias))
        elif pooled:
            found.append(
                f"DJTASKS['DATABASE'] ({alias!r}) goes through a connection pooler, but DJTASKS['POOL_MODE'] is "
                "not set: set it to the pooler's mode ('transaction' or 'session'), so djtasks keeps off what the "
                'pool cannot carry (see "Running behind PgBouncer" in the README)'
            )
    return found


def announce(*, probe: bool = True) -> threading.Thread | None:
    """Log how new work is noticed, then (``probe``) what the connections themselves show, in a thread of its
    own so a database slow to answer never delays the start; the thread is returned for tests to join.
    ``runbeat`` calls it once at start-up; ``runworker`` with ``probe=False``, since its supervisor must have no
    thread before it makes its fork server: its maintenance thread calls ``warn_about_poolers()`` instead."""
    level, text = wakeup_summary(djtasks_settings.get())
    logger.log(level, "djtasks: %s", text)
    if not probe:
        return None
    thread = threading.Thread(target=warn_about_poolers, name="djtasks-pooler-probe", daemon=True)
    thread.start()
    return thread


def warn_about_poolers() -> None:
    """Log the warnings of ``probe_database`` (a pooler the settings do not expect)."""
    for warning in probe_database(djtasks_settings.get()):
        logger.warning("djtasks: %s", warning)


def listen_pooled_message(alias: str) -> str:
    return (
        f"DJTASKS['LISTEN_DATABASE'] ({alias!r}) goes through a connection pooler, which can lose notifications: "
        "not listening, polling for new jobs every POLL_INTERVAL instead; point LISTEN_DATABASE at PostgreSQL "
        "itself"
    )


class Listener:
    """The LISTEN side of one loop (the producer, the beat).

    ``subscribe(store)`` runs the loop's LISTEN statements on the chosen connection and ``on_notify`` sees the
    notifications that arrive while a query runs on it. ``own`` is the loop's connection: LISTEN goes there when
    there is no ``LISTEN_DATABASE``; after the loop's connection failed, the loop calls ``reset()``.
    """

    def __init__(
        self,
        own: WorkerConnection,
        *,
        enabled: bool,
        subscribe: Callable[[Store], None],
        on_notify: Callable[[Any], None] = lambda _n: None,
        role: str = "worker",
    ) -> None:
        conf = djtasks_settings.get()
        alias = conf.listen_alias if enabled else None
        self.enabled = alias is not None
        self._own = own
        self._dedicated: WorkerConnection | None = None
        if alias is not None and conf.LISTEN_DATABASE:
            try:
                self._dedicated = WorkerConnection(alias, role=f"{role}-listen")
            except ConnectionDoesNotExist:  # the system check says so too (djtasks.E022), unless skipped
                logger.error(
                    "DJTASKS['LISTEN_DATABASE'] is %r, which is not in DATABASES: polling for new jobs instead", alias
                )
                self.enabled = False
        self._subscribe = subscribe
        self._on_notify = on_notify
        self._listening = False
        self._retry_at = 0.0  # monotonic time before which a failed dedicated connection is not tried again

    @property
    def listening(self) -> bool:
        return self._listening

    def ensure(self) -> None:
        """LISTEN if it is meant and not done yet. Errors of the loop's own connection propagate (the loop
        reconnects); those of a dedicated connection are logged, and the loop polls meanwhile."""
        if not self.enabled or self._listening:
            return
        if self._dedicated is None:
            self._listen_on(self._own)
            return
        if time.monotonic() < self._retry_at:
            return
        try:
            if through_pooler(self._dedicated):
                logger.warning(listen_pooled_message(djtasks_settings.LISTEN_DATABASE or ""))
                self.enabled = False
                self._dedicated.close()
                return
            self._listen_on(self._dedicated)
        except CONNECTION_ERRORS as exc:
            self._dedicated_failed(exc)

    def _listen_on(self, db: WorkerConnection) -> None:
        db.connection.add_notify_handler(self._on_notify)
        self._subscribe(db.store)
        self._listening = True

    def _dedicated_failed(self, exc: BaseException) -> None:
        logger.warning(
            "LISTEN connection to %r failed (%s): polling every POLL_INTERVAL; trying again in %.0f s",
            djtasks_settings.LISTEN_DATABASE,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            RETRY_S,
        )
        self._listening = False
        self._retry_at = time.monotonic() + RETRY_S
        if self._dedicated is not None:
            self._dedicated.reset()

    def wait(
        self,
        pipe: WakePipe,
        timeout: float,
        *,
        notifications: bool = True,
        on_channel: Callable[[str], None] | None = None,
    ) -> None:
        """Sleep up to ``timeout`` until ``pipe`` is woken or, when ``notifications``, a notification arrives."""
        db = self._dedicated or self._own
        conn = db.connection if self._listening and notifications else None
        if self._dedicated is None or conn is None:
            wait_for_wake(pipe, conn, timeout, on_notify=on_channel)
            return
        try:
            wait_for_wake(pipe, conn, timeout, on_notify=on_channel)
        except CONNECTION_ERRORS as exc:
            self._dedicated_failed(exc)

    def reset(self) -> None:
        """The loop's own connection failed and was dropped: LISTEN again on its next one (a dedicated
        connection is independent and stays)."""
        if self._dedicated is None:
            self._listening = False

    def close(self) -> None:
        self._listening = False
        if self._dedicated is not None:
            self._dedicated.close()
