"""Worker-side database connections: raw psycopg, autocommit, reopened after a failure."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from django.db import connections

from ..conf import djtasks_settings
from ..store import Store

logger = logging.getLogger("djtasks.worker")

# Errors after which the connection is dropped and opened again on next use.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def connection_params(alias: str | None = None) -> dict[str, Any]:
    """psycopg connect() arguments for a Django database alias, minus Django's cursor class."""
    params = dict(connections[alias or djtasks_settings.DATABASE].get_connection_params())
    params.pop("cursor_factory", None)
    params.setdefault("application_name", "djtasks-worker")
    return params


class WorkerConnection:
    """One lazily opened autocommit connection owned by one thread."""

    def __init__(self, alias: str | None = None, *, role: str = "worker") -> None:
        self._params = connection_params(alias)
        self._params["application_name"] = f"djtasks-{role}"
        self._conn: psycopg.Connection[Any] | None = None
        # A lambda, not the bound method: each query must go through the property, which reopens the
        # connection after reset().
        self.store = Store(lambda: self.connection.cursor())

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._params, autocommit=True)
        return self._conn

    def reset(self) -> None:
        """Drop the connection after an error; the next use opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken; closing is best effort
                conn.close()

    def close(self) -> None:
        self.reset()
