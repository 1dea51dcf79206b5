"""Worker-side database connections: raw psycopg, autocommit, reopened after a failure."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import psycopg
from django.db import connections
from psycopg.types.array import ListBinaryDumper

from ..conf import djtasks_settings
from ..store import Store

logger = logging.getLogger("djtasks.worker")

CONNECT_TIMEOUT_S = 10  # a server that does not answer is retried rather than waited on forever
UTC_NAMES = ("UTC", "Etc/UTC")  # what a server reports (ParameterStatus TimeZone) for a session in UTC

_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, psycopg.pq.Format.TEXT)
assert _TIMESTAMPTZ_LOADER is not None  # psycopg registers one for every built-in type
_FAST_TIMESTAMPTZ = _TIMESTAMPTZ_LOADER

# Set once a server refused the start-up options (a pooler POOL_MODE does not mention): not sent again.
_options_refused = threading.Event()

# Errors after which the connection is dropped and opened again on next use.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def connection_params(alias: str | None = None) -> dict[str, Any]:
    """psycopg connect() arguments for a Django database alias, minus Django's cursor class."""
    params = dict(connections[alias or djtasks_settings.DATABASE].get_connection_params())
    params.pop("cursor_factory", None)
    params.setdefault("application_name", "djtasks-worker")
    return params


class WorkerConnection:
    """One lazily opened autocommit connection owned by one thread; ``reset()`` after an error, and the
    next query opens a new one."""

    def __init__(
        self,
        alias: str | None = None,
        *,
        role: str = "worker",
        prepare: bool = False,
        durable: bool = True,
        statement_timeout_ms: int | None = None,
    ) -> None:
        """``prepare``: use server-side prepared statements (the hot path's few queries run thousands of
        times; skipped when ``DJTASKS['PREPARED_STATEMENTS']`` is off, which by default follows LISTEN).
        ``durable=False``: commits do not wait for the WAL flush (``synchronous_commit=off``). Only for
        writes that may be lost in a server crash without harm: a lost claim leaves the job queued, and it
        runs once the server is back; that is within at-least-once delivery. Outcomes stay durable.
        ``statement_timeout_ms``: the server cancels a statement that runs longer (for reads that may give up)."""
        self._params = connection_params(alias)
        self._params["application_name"] = f"djtasks-{role}"
        self._params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        if prepare and djtasks_settings.prepared_statements and self._params.get("prepare_threshold") is None:
            self._params["prepare_threshold"] = 0
        # Timestamps come back in UTC, as on Django's connections (which set it per session); claims may skip
        # the WAL flush. Both go as the start-up parameter "options", which PgBouncer refuses ("unsupported
        # startup parameter: options"). Behind a pooler (POOL_MODE) the time zone is SET once connected
        # instead (PgBouncer tracks TimeZone and carries it to every server connection it lends this client),
        # and commits stay durable: synchronous_commit is not tracked, a SET would leak to other clients.
        extra = "-c TimeZone=UTC" if durable else "-c TimeZone=UTC -c synchronous_commit=off"
        if statement_timeout_ms is not None:  # not carried behind a pooler: such reads just run to the end there
            extra += f" -c statement_timeout={int(statement_timeout_ms)}"
        self._options: str | None = None
        if djtasks_settings.POOL_MODE is None and not _options_refused.is_set():
            self._options = self._params["options"] = f"{self._params.get('options', '')} {extra}".strip()
        self._conn: psycopg.Connection[Any] | None = None
        self.store = Store(self._cursor, atomic=lambda: self.connection.transaction())

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(**self._params, autocommit=True)
            except psycopg.OperationalError as exc:
                if self._options is None or "unsupported startup parameter" not in str(exc):
                    raise
                # A pooler that DJTASKS['POOL_MODE'] does not mention: do without, and say so once a process.
                if not _options_refused.is_set():
                    _options_refused.set()
                    logger.warning(
                        "the server refused the start-up parameter options=%r (a connection pooler? set "
                        "DJTASKS['POOL_MODE']): the time zone is set after connecting, commits stay durable",
                        self._options,
                    )
                self._params.pop("options", None)
                self._options = None
                conn = psycopg.connect(**self._params, autocommit=True)
            if self._options is None and conn.info.parameter_status("TimeZone") not in UTC_NAMES:
                Store(conn.cursor).connection_timezone_utc()
            # Django's context parses timestamptz in Python; psycopg's own loader (C, in psycopg[binary]) is
            # several times faster on the claim, which returns two per job, and the session is in UTC anyway.
            conn.adapters.register_loader("timestamptz", _FAST_TIMESTAMPTZ)
            # Lists (the hot path's arrays: ids, attempts, outcomes, times) go in binary: psycopg's text array
            # dumper quotes element by element in Python, 10 us a job on the finish against under 2 in binary.
            # Every array parameter in queries.sql has an explicit cast, so the element type sent never matters.
            conn.adapters.register_dumper(list, ListBinaryDumper)
            self._conn = conn
        return self._conn

    def _cursor(self) -> psycopg.Cursor[Any]:
        # The connection is looked up on each use, not bound once: after reset() queries go to the new one.
        return self.connection.cursor()

    def reset(self) -> None:
        """Drop the connection after an error; the next use opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; closing is best effort
                conn.close()

    def close(self) -> None:
        self.reset()
