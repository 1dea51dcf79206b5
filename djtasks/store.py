"""The only module that executes SQL. One method per named query in ``sql/queries.sql``.

A ``Store`` wraps a way to get a cursor: ``Store.for_django()`` uses Django's connection for the configured
alias, so enqueueing joins the caller's transaction; workers build one on their own psycopg connection
(``Store(conn.cursor)``) in autocommit mode, where each named query is one statement and one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

QUERIES_PATH = Path(__file__).with_name("sql") / "queries.sql"
_NAME_RE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    """Parse ``queries.sql`` into ``{name: sql}`` (read once per process)."""
    text = QUERIES_PATH.read_text()
    parts = _NAME_RE.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";")
        if name in found:
            raise ValueError(f"query {name!r} is defined twice in {QUERIES_PATH}")
        found[name] = sql
    return found


def _rows(cursor: Any) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [col.name if hasattr(col, "name") else col[0] for col in cursor.description]
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


class Store:
    def __init__(self, cursor_factory: Callable[[], Any]) -> None:
        self._cursor = cursor_factory

    @classmethod
    def for_django(cls, alias: str | None = None) -> Store:
        """A store on Django's connection for ``alias`` (default: ``DJTASKS['DATABASE']``)."""
        from django.db import connections

        from .conf import djtasks_settings

        return cls(connections[alias or djtasks_settings.DATABASE].cursor)

    def _execute(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute(queries()[name], params)
            return _rows(cur)

    # -- jobs: enqueue --------------------------------------------------------------------------------
    def job_insert(self, *, now: datetime, **job: Any) -> None:
        self._execute("job_insert", {"now": now, "time_limit": None, "soft_time_limit": None, **job})

    def job_insert_many(self, *, now: datetime, jobs: Sequence[dict[str, Any]]) -> None:
        if not jobs:
            return
        self._execute(
            "job_insert_many",
            {
                "now": now,
                "ids": [j["id"] for j in jobs],
                "names": [j["name"] for j in jobs],
                "queues": [j["queue"] for j in jobs],
                "priorities": [j["priority"] for j in jobs],
                "args": [j["args"] for j in jobs],
                "kwargs": [j["kwargs"] for j in jobs],
                "run_ats": [j["run_at"] for j in jobs],
                "expires_ats": [j["expires_at"] for j in jobs],
                "max_attempts": [j["max_attempts"] for j in jobs],
                "time_limits": [j.get("time_limit") for j in jobs],
                "soft_time_limits": [j.get("soft_time_limit") for j in jobs],
            },
        )

    # -- jobs: hot path -------------------------------------------------------------------------------
    def job_claim_many(
        self, *, now: datetime, worker_id: UUID, queues: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        return self._execute(
            "job_claim_many", {"now": now, "worker_id": worker_id, "queues": list(queues), "limit": limit}
        )

    def job_finish_many(self, *, worker_id: UUID, outcomes: Iterable[dict[str, Any]]) -> set[UUID]:
        """Record outcomes (``id, attempt, status, result, error, run_at, finished_at``); returns the ids written."""
        outcomes = list(outcomes)
        if not outcomes:
            return set()
        rows = self._execute(
            "job_finish_many",
            {
                "worker_id": worker_id,
                "ids": [o["id"] for o in outcomes],
                "attempts": [o["attempt"] for o in outcomes],
                "statuses": [o["status"] for o in outcomes],
                "results": [o.get("result") for o in outcomes],
                "errors": [o.get("error") for o in outcomes],
                "run_ats": [o.get("run_at") for o in outcomes],
                "finished_ats": [o.get("finished_at") for o in outcomes],
            },
        )
        return {row["id"] for row in rows}

    def job_release_many(self, *, now: datetime, worker_id: UUID, keep_ids: Iterable[UUID] = ()) -> dict[UUID, str]:
        """Hand the worker's running jobs (but ``keep_ids``) back to the queue, attempt not counted; a job
        with a cancel request ends cancelled. Returns ``{id: status after}``."""
        rows = self._execute("job_release_many", {"now": now, "worker_id": worker_id, "keep_ids": list(keep_ids)})
        return {row["id"]: row["status"] for row in rows}

    def job_next_run_at(self, *, queues: Sequence[str]) -> datetime | None:
        return self._execute("job_next_run_at", {"queues": list(queues)})[0]["run_at"]

    # -- jobs: operator actions --------------------------------------------------------------------------
    def job_cancel_many(self, *, now: datetime, ids: Sequence[UUID], terminate: bool = False) -> dict[UUID, str]:
        """Cancel queued jobs now and flag running ones (``terminate``: for their supervisor to kill); returns
        ``{id: status after}`` for jobs it touched (finished jobs are left alone and absent from the answer)."""
        if not ids:
            return {}
        rows = self._execute("job_cancel_many", {"now": now, "ids": list(ids), "terminate": terminate})
        return {row["id"]: row["status"] for row in rows}

    def job_cancel_requested(self, job_id: UUID) -> bool:
        rows = self._execute("job_cancel_requested", {"id": job_id})
        return bool(rows and rows[0]["cancel_requested"])

    def job_terminate_requested_many(self, *, worker_ids: Sequence[UUID]) -> list[dict[str, Any]]:
        """Running jobs of these workers to be cancelled by killing their process: ``id, worker_id, attempt``."""
        if not worker_ids:
            return []
        return self._execute("job_terminate_requested_many", {"worker_ids": list(worker_ids)})

    # -- jobs: reads ----------------------------------------------------------------------------------
    def job_get(self, job_id: UUID) -> dict[str, Any] | None:
        rows = self._execute("job_get", {"id": job_id})
        return rows[0] if rows else None

    def queue_listen(self) -> None:
        self._execute("queue_listen", {})

    # -- workers --------------------------------------------------------------------------------------
    def worker_register(
        self, *, now: datetime, id: UUID, hostname: str, pid: int, queues: str, concurrency: int
    ) -> None:
        self._execute(
            "worker_register",
            {
                "now": now,
                "id": id,
                "hostname": hostname,
                "pid": pid,
                "queues": queues,
                "concurrency": concurrency,
            },
        )

    def worker_heartbeat(self, *, now: datetime, id: UUID) -> bool:
        return bool(self._execute("worker_heartbeat", {"now": now, "id": id}))

    def worker_delete(self, *, id: UUID) -> None:
        self._execute("worker_delete", {"id": id})

    def worker_rescue_many(
        self,
        *,
        now: datetime,
        cutoff: datetime | None = None,
        worker_ids: Sequence[UUID] = (),
        reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """Declare dead the workers silent since before ``cutoff`` and those in ``worker_ids`` (``reason`` says
        why); delete their rows and rescue their running jobs. One row per dead worker without jobs and per
        rescued job: ``worker_id, job_id, status, attempt``."""
        return self._execute(
            "worker_rescue_many",
            {"now": now, "cutoff": cutoff, "worker_ids": list(worker_ids), "reason": reason},
        )

    # -- maintenance ----------------------------------------------------------------------------------
    def maintenance_lock(self, *, name: str) -> bool:
        """Take the session-level advisory lock of maintenance service ``name`` if nobody holds it."""
        return bool(self._execute("maintenance_lock", {"name": name})[0]["locked"])

    def maintenance_unlock(self, *, name: str) -> bool:
        return bool(self._execute("maintenance_unlock", {"name": name})[0]["unlocked"])
