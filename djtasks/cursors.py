"""Statements on Django's connection for the store: through Django's cursor, or as a prepared statement.

Enqueueing runs on the caller's Django connection so that it joins the caller's transaction. Django opens
that connection with client-side binding and with psycopg's prepared statements off (``prepare_threshold``
``None``, because a transaction-mode pooler may hand each transaction a different server session). Then every
``.delay()`` sends the whole INSERT text to be quoted, parsed and planned: about a third of its cost.

``execute_prepared`` runs djtasks' statement prepared anyway, without changing how the rest of the site's
queries run: a server-binding psycopg cursor on the same connection, with psycopg's threshold lowered to 0
only while our statement runs, so psycopg prepares it once per connection and reuses it (psycopg keeps its
own record of what it prepared and forgets it on rollback). Django's part is kept: the checks its
``cursor()`` makes (health check, connection, thread, async context, broken transaction) and its exception
classes. Instrumentation through ``connection.execute_wrapper`` sees the statement as any other; when
Django logs queries (``DEBUG``, ``assertNumQueries``) the statement goes through Django's own cursor,
unprepared, so the log shows its text.
``DJTASKS["PREPARED_STATEMENTS"] = False`` turns all this off (a pooler that does not keep prepared
statements, such as PgBouncer before 1.21 in transaction mode).
"""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from django.db import connections, transaction

from .conf import djtasks_settings
from .store import Store

# One reusable server-binding cursor per psycopg connection (a connection is used by one thread at a time).
_cursors: weakref.WeakKeyDictionary[psycopg.Connection[Any], psycopg.Cursor[Any]] = weakref.WeakKeyDictionary()


def django_connection(alias: str | None = None) -> Any:
    """Django's connection (this thread's) for ``alias``, default ``DJTASKS['DATABASE']``."""
    return connections[alias or djtasks_settings.DATABASE]


def django_store(alias: str | None = None) -> Store:
    """A store on Django's connection for ``alias`` (default: ``DJTASKS['DATABASE']``): its statements join the
    caller's transaction, and the enqueue statement runs prepared (see the module doc)."""

    def atomic() -> AbstractContextManager[Any]:
        block: AbstractContextManager[Any] = transaction.atomic(using=django_connection(alias).alias)
        return block

    # Looked up per query: Django's connections are per thread, and a Store may be shared.
    return Store(lambda: cursor(alias), lambda sql, params: execute_prepared(sql, params, alias), atomic)


def cursor(alias: str | None = None) -> Any:
    """Django's own cursor for ``alias``."""
    return django_connection(alias).cursor()


def execute_prepared(sql: str, params: dict[str, Any], alias: str | None = None) -> None:
    """Run ``sql`` (no rows read back) on Django's connection as a prepared statement; see the module doc.

    Falls back to Django's own cursor when prepared statements are off, when Django logs queries (its log
    reads the SQL text back from its own cursor kind) or when the connection is not psycopg 3's.
    """
    conf = djtasks_settings.get()
    db = connections[alias or conf.DATABASE]
    if conf.prepared_statements and not db.queries_logged:
        # What Django's connection.cursor() checks before it makes a cursor, in the same order.
        db.close_if_health_check_failed()
        db.ensure_connection()  # also refuses an async context, as cursor() does
        db.validate_thread_sharing()
        if isinstance(db.connection, psycopg.Connection):
            _execute_prepared(db, db.connection, sql, params)
            return
    with db.cursor() as cur:
        cur.execute(sql, params)


def _execute_prepared(db: Any, conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> None:
    lowered = conn.prepare_threshold is None  # the site's own setting (OPTIONS) is left as it is
    if lowered:
        conn.prepare_threshold = 0
    try:
        if db.execute_wrappers:  # instrumentation (connection.execute_wrapper) sees it like any query
            with db.make_cursor(psycopg.Cursor(conn)) as cur:
                cur.execute(sql, params)
            return
        db.validate_no_broken_transaction()  # what CursorWrapper.execute() checks
        cur = _cursors.get(conn)
        if cur is None or cur.closed:
            cur = _cursors[conn] = psycopg.Cursor(conn)
        with db.wrap_database_errors:
            cur.execute(sql, params)
    finally:
        if lowered:
            conn.prepare_threshold = None
