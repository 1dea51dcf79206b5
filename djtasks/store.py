"""The only module that executes SQL. One method per named query in ``sql/queries.sql``.

A ``Store`` wraps a way to get a cursor: ``cursors.django_store()`` uses Django's connection for the configured
alias, so enqueueing joins the caller's transaction; workers build one on their own psycopg connection
(``Store(conn.cursor)``) in autocommit mode, where each named query is one statement and one transaction.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Any, cast
from uuid import UUID

from . import serialization
from .exceptions import JobCancelled, JobExpired, WorkerLost
from .rows import ClaimedJob, Outcome, PeriodicJob, ScheduleRow, StartMark, TerminateRequest, error_entry

QUERIES_RESOURCE = ("djtasks", "sql/queries.sql")  # read with importlib.resources: works from a wheel or a zip
_NAME_RE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
UNIQUE_INSERT_TRIES = 3  # job_insert_unique rounds before giving up on a key held by an invisible job


@cache
def queries() -> dict[str, str]:
    """Parse ``queries.sql`` into ``{name: sql}`` (read once per process)."""
    package, resource = QUERIES_RESOURCE
    return parse_queries(files(package).joinpath(resource).read_text(encoding="utf-8"), f"{package}/{resource}")


def parse_queries(text: str, source: str) -> dict[str, str]:
    """``{name: sql}`` from named-query text (``-- name: x`` then ``--`` comment lines, then the statement)."""
    parts = _NAME_RE.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";")
        if name in found:
            raise ValueError(f"query {name!r} is defined twice in {source}")
        found[name] = sql
    return found


def _entry(kind: type[BaseException], now: datetime, message: str = "") -> str:
    """An error entry template (JSON) that a query completes per row with ``jsonb ||``."""
    return serialization.dumps(error_entry(kind, at=now, message=message), "error")


def _rows(cursor: Any, query: str | None = None) -> list[dict[str, Any]]:
    """The cursor's rows as dicts. With ``query`` (a named query) the column names are read once per process:
    psycopg makes its Column objects anew on each read of ``description``, 15 of them for a claim."""
    names = _COLUMNS.get(query) if query is not None else None
    if names is None:
        description = cursor.description
        if description is None:
            return []
        names = [col.name if hasattr(col, "name") else col[0] for col in description]
        if query is not None:
            _COLUMNS[query] = names
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


_COLUMNS: dict[str, list[str]] = {}  # named query -> its result's column names (see _rows)


def _claim_order(row: ClaimedJob) -> tuple[int, datetime, int]:
    """Claimed rows in the order they should start: priority, then due time, then id. The id compares as its
    int: the same order as UUIDs (which compare their ints) without a Python-level ``UUID.__lt__`` per tie,
    and jobs enqueued together tie on due time."""
    return (-row["priority"], row["run_at"], row["id"].int)


class Store:
    def __init__(
        self,
        cursor_factory: Callable[[], Any],
        execute_prepared: Callable[[str, dict[str, Any]], None] | None = None,
        atomic: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """``cursor_factory()`` gives a cursor (a context manager). ``execute_prepared(sql, params)``, if
        given, runs the enqueue statement prepared (``cursors.execute_prepared`` on Django's connection); a
        worker's connection needs none, it prepares every statement. ``atomic()`` opens a transaction on the
        same connection: statements that must commit together with a workflow hand-off run in it."""
        self._cursor = cursor_factory
        self._execute_prepared = execute_prepared or self._execute_no_rows
        self._atomic = atomic or contextlib.nullcontext

    def _execute(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute(queries()[name], params)
            return _rows(cur, name)

    def _execute_no_rows(self, sql: str, params: dict[str, Any]) -> None:
        with self._cursor() as cur:
            cur.execute(sql, params)

    # -- jobs: enqueue --------------------------------------------------------------------------------
    def job_insert(self, *, now: datetime, **job: Any) -> None:
        # The one statement a web request runs per enqueue: prepared, and its NOTIFY row left unread.
        self._execute_prepared(
            queries()["job_insert"],
            {"now": now, "time_limit": None, "soft_time_limit": None, "trace_context": None, **job},
        )

    def job_insert_many(self, *, now: datetime, jobs: Sequence[dict[str, Any]]) -> None:
        """Insert a batch with COPY, then NOTIFY the queues that got jobs due now. On Django's connection
        both join the caller's transaction, like ``job_insert``."""
        if not jobs:
            return
        with self._cursor() as cur:
            raw = getattr(cur, "cursor", cur)  # Django's CursorWrapper hides psycopg's copy()
            errors = cur.db.wrap_database_errors if hasattr(cur, "db") else contextlib.nullcontext()
            with errors, raw.copy(queries()["job_insert_many"]) as copy:
                for j in jobs:
                    copy.write_row(
                        (
                            j["id"],
                            j["name"],
                            j["queue"],
                            j["priority"],
                            "queued",
                            j["args"],
                            j["kwargs"],
                            j["run_at"],
                            now,
                            j["expires_at"],
                            0,
                            j["max_attempts"],
                            "[]",
                            False,
                            j.get("time_limit"),
                            j.get("soft_time_limit"),
                            j.get("trace_context"),
                        )
                    )
            due = sorted({j["queue"] for j in jobs if j["run_at"] <= now})
            if due:
                cur.execute(queries()["queue_notify_many"], {"queues": due})

    def job_insert_workflow_many(self, *, now: datetime, jobs: Sequence[dict[str, Any]]) -> None:
        """Insert the jobs of a workflow with COPY (``job_insert_many``'s keys plus ``status``, ``parent_id``,
        ``group_id``, ``on_success`` as JSON text), then NOTIFY the queues that got jobs due now."""
        if not jobs:
            return
        with self._cursor() as cur:
            raw = getattr(cur, "cursor", cur)
            errors = cur.db.wrap_database_errors if hasattr(cur, "db") else contextlib.nullcontext()
            with errors, raw.copy(queries()["job_insert_workflow_many"]) as copy:
                for j in jobs:
                    copy.write_row(
                        (
                            j["id"], j["name"], j["queue"], j["priority"], j["status"], j["args"], j["kwargs"],
                            j["run_at"], now, j["expires_at"], 0, j["max_attempts"], "[]", False,
                            j.get("time_limit"), j.get("soft_time_limit"), j["parent_id"], j["group_id"],
                            j["on_success"], j.get("trace_context"),
                        )
                    )  # fmt: skip
            due = sorted({j["queue"] for j in jobs if j["status"] == "queued" and j["run_at"] <= now})
            if due:
                cur.execute(queries()["queue_notify_many"], {"queues": due})

    def group_insert_many(self, *, now: datetime, groups: Sequence[dict[str, Any]]) -> None:
        """Insert groups: ``id, total, members`` (JSON list of job ids), ``on_success`` (JSON or None),
        ``parent_id``."""
        if not groups:
            return
        params = {
            "now": now,
            "ids": [g["id"] for g in groups],
            "totals": [g["total"] for g in groups],
            "members": [g["members"] for g in groups],
            "on_successes": [g["on_success"] for g in groups],
            "parent_ids": [g["parent_id"] for g in groups],
        }
        self._execute("group_insert_many", params)

    def job_insert_unique(
        self, *, now: datetime, unique_key: str, since: datetime | None, **job: Any
    ) -> tuple[UUID, bool]:
        """Insert a unique job unless its key is taken (``since``: finished jobs enqueued since then count too);
        returns ``(id, inserted)``: the new job's id, or the existing job's."""
        params = {"now": now, "unique_key": unique_key, "since": since}
        params.update(time_limit=None, soft_time_limit=None, trace_context=None)  # the keys a row may leave out
        for _ in range(UNIQUE_INSERT_TRIES):
            row = self._execute("job_insert_unique", {**params, **job})[0]
            if row["inserted_id"] is not None:
                return row["inserted_id"], True
            if row["existing_id"] is not None:
                return row["existing_id"], False
            # A concurrent enqueuer inserted the key after this statement's snapshot: a new statement sees it
            # (unless that job finished meanwhile: then try again).
            found = self._execute("job_get_by_unique_key", {"unique_key": unique_key})
            if found:
                return found[0]["id"], False
        raise RuntimeError(f"unique key {unique_key!r}: held by a job this transaction cannot see (isolation level?)")

    # -- workflows ------------------------------------------------------------------------------------
    def job_handoff_many(self, *, now: datetime, ids: Sequence[UUID]) -> dict[str, Any]:
        """Hand finished workflow jobs on (``job_handoff_many``), then release the chord callbacks of the
        groups that completed (``group_release_many``). Run it in the transaction that recorded the jobs
        finished. Jobs outside workflows in ``ids`` are ignored. Returns the counts and completed groups."""
        if not ids:
            return {"released": 0, "cancelled": 0, "completed": []}
        params = {"now": now, "ids": list(ids), "cancelled_error": _entry(JobCancelled, now)}
        row = self._execute("job_handoff_many", params)[0]
        if row["completed"]:
            self._execute("group_release_many", {"now": now, "ids": list(row["completed"])})
        return row

    def job_stranded_many(self, *, limit: int) -> list[UUID]:
        """Finished, unsuccessful workflow jobs with a step still waiting on them (their hand-off was lost)."""
        return [row["id"] for row in self._execute("job_stranded_many", {"limit": limit})]

    def group_get(self, group_id: UUID) -> dict[str, Any] | None:
        rows = self._execute("group_get", {"id": group_id})
        return rows[0] if rows else None

    def group_status_count(self, group_id: UUID) -> dict[str, int]:
        """``{status: number of members}`` of one group."""
        return {row["status"]: row["n"] for row in self._execute("group_status_count", {"id": group_id})}

    def job_get_many(self, ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
        """Rows of several jobs, by id (missing ones absent)."""
        if not ids:
            return {}
        return {row["id"]: row for row in self._execute("job_get_many", {"ids": list(ids)})}

    def job_progress_set(self, *, id: UUID, attempt: int, progress: str) -> bool:
        """Store a running attempt's progress (JSON text); False if the attempt no longer runs."""
        with self._cursor() as cur:
            cur.execute(queries()["job_progress_set"], {"id": id, "attempt": attempt, "progress": progress})
            return bool(cur.rowcount > 0)

    # -- jobs: hot path -------------------------------------------------------------------------------
    def job_claim_many(self, *, now: datetime, worker_id: UUID, queues: Sequence[str], limit: int) -> list[ClaimedJob]:
        params = {"now": now, "worker_id": worker_id, "queues": list(queues), "limit": limit}
        rows = cast(
            "list[ClaimedJob]", self._execute("job_claim_many", {**params, "expired_error": _entry(JobExpired, now)})
        )
        # UPDATE ... RETURNING does not keep the candidates' order: restore it, so jobs start by priority.
        rows.sort(key=_claim_order)
        return rows

    def job_claim_skipping_many(
        self, *, now: datetime, worker_id: UUID, queues: Sequence[str], limit: int, skip_names: Sequence[str]
    ) -> list[ClaimedJob]:
        """``job_claim_many`` leaving out jobs named in ``skip_names`` (job names with a concurrency limit,
        which only a limited claim may start): ``job_claim_limited_many`` run alone, without locks."""
        params = {
            "now": now,
            "worker_id": worker_id,
            "queues": list(queues),
            "caps": [limit] * len(queues),
            "names_only": [False] * len(queues),
            "open_names": [],
            "name_caps": [],
            "full_names": list(skip_names),
            "rated_queues": [],
            "intervals": [],
            "limit": limit,
            "expired_error": _entry(JobExpired, now),
        }
        rows = cast("list[ClaimedJob]", self._execute("job_claim_limited_many", params))
        rows.sort(key=_claim_order)
        return rows

    def job_claim_limited_many(
        self,
        *,
        queues: Sequence[str],
        jobs: Sequence[str],
        plan: Callable[[list[dict[str, Any]], dict[tuple[str, str], int]], dict[str, Any] | None],
    ) -> list[ClaimedJob]:
        """Claim jobs of limited queues and job names in one transaction: lock their ``djtasks_queue`` rows
        (``queue_lock_many``), count what runs (``job_running_count_many``), ask ``plan(locked_rows,
        {(kind, name): running})`` for the parameters of ``job_claim_limited_many`` (``None``: claim
        nothing), claim. Claims of the same queue or job name wait for each other on the row locks, so two
        workers claiming at once cannot overshoot a limit; the lock is held for three short statements.

        Needs a psycopg connection (a worker's): the statements go in pipeline mode, two round trips in all
        (BEGIN, lock and count; then claim and COMMIT). The count still runs after the lock is granted: the
        server runs a pipeline's statements one after the other."""
        names = {"queues": list(queues), "jobs": list(jobs)}
        params = None
        with self._cursor() as cur, cur.connection.cursor() as counts, cur.connection.pipeline() as pipeline:
            with cur.connection.transaction():
                cur.execute(queries()["queue_lock_many"], names)
                counts.execute(queries()["job_running_count_many"], names)
                pipeline.sync()
                locked = _rows(cur)
                running = {(row["kind"], row["name"]): row["running"] for row in _rows(counts)}
                params = plan(locked, running)
                if params is not None:
                    params = {**params, "expired_error": _entry(JobExpired, params["now"])}
                    cur.execute(queries()["job_claim_limited_many"], params)
            rows = cast("list[ClaimedJob]", _rows(cur)) if params is not None else []
        rows.sort(key=_claim_order)
        return rows

    def job_finish_many(
        self, *, worker_id: UUID, outcomes: Iterable[Outcome], marks: Iterable[StartMark] = ()
    ) -> set[UUID]:
        """Record outcomes and start marks (jobs still running whose function started); returns the ids of the
        outcomes written.

        An outcome whose claimed row was part of a workflow (``workflow``: true, or the key missing) is recorded
        in one transaction with its hand-off (``job_handoff_many``); a batch of plain jobs is one statement."""
        outcomes, marks = list(outcomes), list(marks)
        if not outcomes and not marks:
            return set()
        workflow = [o["id"] for o in outcomes if o.get("workflow", True)]
        if not workflow:
            return self._job_finish_many(worker_id, outcomes, marks)
        with self._atomic():
            written = self._job_finish_many(worker_id, outcomes, marks)
            now = max(o["finished_at"] for o in outcomes)
            self.job_handoff_many(now=now, ids=[i for i in workflow if i in written])
        return written

    def _job_finish_many(self, worker_id: UUID, outcomes: list[Outcome], marks: list[StartMark]) -> set[UUID]:
        # unnest() pads a shorter array with NULLs: a column that is NULL for the whole batch (no error, no
        # retry: a batch of successes) is sent as an empty array, which spares adapting it value by value.
        errors = [o.get("error") for o in outcomes]
        run_ats = [o.get("run_at") for o in outcomes]
        params = {
            "worker_id": worker_id,
            "ids": [o["id"] for o in outcomes],
            "attempts": [o["attempt"] for o in outcomes],
            "statuses": [o["status"] for o in outcomes],
            "results": [o.get("result") for o in outcomes],
            "errors": errors if any(e is not None for e in errors) else [],
            "run_ats": run_ats if any(r is not None for r in run_ats) else [],
            "finished_ats": [o.get("finished_at") for o in outcomes],
            "started_ats": [o.get("started_at") for o in outcomes],
            "mark_ids": [m["id"] for m in marks],
            "mark_attempts": [m["attempt"] for m in marks],
            "mark_started_ats": [m["started_at"] for m in marks],
        }
        with self._cursor() as cur:
            cur.execute(queries()["job_finish_many"], params)
            if cur.rowcount == len(outcomes):
                # Every outcome was written (the usual case): the ids it returns are the ones sent, and reading
                # them back would make a UUID object of each.
                return {o["id"] for o in outcomes}
            return {row["id"] for row in _rows(cur)}

    def job_release_many(self, *, now: datetime, worker_id: UUID, keep_ids: Iterable[UUID] = ()) -> dict[UUID, str]:
        """Hand the worker's running jobs (but ``keep_ids``) back to the queue, attempt not counted; a job
        with a cancel request ends cancelled. Returns ``{id: status after}``."""
        with self._atomic():
            params = {"now": now, "worker_id": worker_id, "keep_ids": list(keep_ids)}
            error = _entry(JobCancelled, now, "cancelled: stopped before it finished")
            rows = self._execute("job_release_many", {**params, "cancelled_error": error})
            self.job_handoff_many(now=now, ids=[row["id"] for row in rows if row["status"] == "cancelled"])
        return {row["id"]: row["status"] for row in rows}

    def job_next_run_at(
        self, *, queues: Sequence[str], horizon: datetime, skip_names: Sequence[str] = ()
    ) -> datetime | None:
        params = {"queues": list(queues), "horizon": horizon, "skip_names": list(skip_names)}
        run_at: datetime | None = self._execute("job_next_run_at", params)[0]["run_at"]
        return run_at

    # -- jobs: operator actions --------------------------------------------------------------------------
    def job_cancel_many(self, *, now: datetime, ids: Sequence[UUID], terminate: bool = False) -> dict[UUID, str]:
        """Cancel queued jobs now and flag running ones (``terminate``: for their supervisor to kill); returns
        ``{id: status after}`` for jobs it touched (finished jobs are left alone and absent from the answer)."""
        if not ids:
            return {}
        with self._atomic():
            error = _entry(JobCancelled, now, "cancelled before it ran")
            params = {"now": now, "ids": list(ids), "terminate": terminate, "cancelled_error": error}
            rows = self._execute("job_cancel_many", params)
            self.job_handoff_many(now=now, ids=[row["id"] for row in rows if row["status"] == "cancelled"])
        return {row["id"]: row["status"] for row in rows}

    def job_cancel_requested(self, job_id: UUID) -> bool:
        rows = self._execute("job_cancel_requested", {"id": job_id})
        return bool(rows and rows[0]["cancel_requested"])

    def job_terminate_requested_many(self, *, worker_ids: Sequence[UUID]) -> list[TerminateRequest]:
        """Running jobs of these workers to be cancelled by killing their process: ``id, worker_id, attempt``."""
        if not worker_ids:
            return []
        rows: list[Any] = self._execute("job_terminate_requested_many", {"worker_ids": list(worker_ids)})
        return rows

    # -- jobs: maintenance ----------------------------------------------------------------------------
    def job_prune_many(self, *, statuses: Sequence[str], before: datetime, limit: int) -> int:
        """Delete one batch of finished jobs; returns how many were deleted."""
        with self._cursor() as cur:
            cur.execute(queries()["job_prune_many"], {"statuses": list(statuses), "before": before, "limit": limit})
            return int(cur.rowcount)

    def job_queued_ids(self, *, queue: str, limit: int) -> list[UUID]:
        """Up to ``limit`` ids of ``queue``'s queued jobs (due or scheduled)."""
        return [row["id"] for row in self._execute("job_queued_ids", {"queue": queue, "limit": limit})]

    def job_count_waiting(self, *, queue: str) -> int:
        return int(self._execute("job_count_waiting", {"queue": queue})[0]["waiting"])

    def group_prune_many(self, *, before: datetime, limit: int) -> int:
        """Delete one batch of groups made before ``before`` whose members are all gone; returns how many."""
        with self._cursor() as cur:
            cur.execute(queries()["group_prune_many"], {"before": before, "limit": limit})
            return int(cur.rowcount)

    def job_retry_many(self, *, now: datetime, ids: Sequence[UUID]) -> set[UUID]:
        """Failed/cancelled jobs back to ``queued`` (due ``now``, one more attempt allowed); NOTIFYs their
        queues. Returns the ids retried."""
        if not ids:
            return set()
        return {row["id"] for row in self._execute("job_retry_many", {"now": now, "ids": list(ids)})}

    def job_requeue_many(self, *, now: datetime, ids: Sequence[UUID], new_ids: Sequence[UUID]) -> set[UUID]:
        """Insert a fresh copy of each finished job in ``ids`` under the id at the same place in ``new_ids``;
        NOTIFYs their queues. Returns the new ids inserted."""
        if not ids:
            return set()
        params = {"now": now, "ids": list(ids), "new_ids": list(new_ids)}
        return {row["id"] for row in self._execute("job_requeue_many", params)}

    def job_delete_many(self, *, ids: Sequence[UUID], now: datetime | None = None) -> set[UUID]:
        """Delete jobs that are not running; returns the ids deleted. With ``now``, an unfinished workflow job is
        cancelled first (in the same transaction), so the steps waiting on it end cancelled, not waiting forever."""
        if not ids:
            return set()
        with self._atomic():
            if now is not None:
                pending = [
                    row["id"]
                    for row in self.job_get_many(ids).values()
                    if row["status"] in ("queued", "waiting") and (row["on_success"] or row["group_id"])
                ]
                if pending:
                    self.job_cancel_many(now=now, ids=pending)
            return {row["id"] for row in self._execute("job_delete_many", {"ids": list(ids)})}

    # -- jobs: reads ----------------------------------------------------------------------------------
    def job_get(self, job_id: UUID) -> dict[str, Any] | None:
        rows = self._execute("job_get", {"id": job_id})
        return rows[0] if rows else None

    def job_count_estimate(self) -> int | None:
        """The planner's row count of the job table, or ``None`` before its first ANALYZE."""
        estimate: int | None = self._execute("job_count_estimate", {})[0]["estimate"]
        return estimate

    # -- queue dashboard --------------------------------------------------------------------------------
    def queue_stats_waiting(self, *, now: datetime) -> list[dict[str, Any]]:
        """Per queue: ``queued`` (due), ``scheduled`` (later), ``oldest_run_at`` of the due ones."""
        return self._execute("queue_stats_waiting", {"now": now})

    def queue_stats_workflow_waiting(self) -> list[dict[str, Any]]:
        """Per queue: ``waiting`` workflow steps."""
        return self._execute("queue_stats_workflow_waiting", {})

    def queue_stats_running(self) -> list[dict[str, Any]]:
        """Per queue: ``running``."""
        return self._execute("queue_stats_running", {})

    def queue_stats_finished(
        self, *, now: datetime, since: datetime, bucket: timedelta, origin: datetime
    ) -> list[dict[str, Any]]:
        """Per queue and ``bucket``-long slot (aligned on ``origin``) between ``since`` and ``now``:
        ``succeeded``, ``failed``, ``cancelled``."""
        params = {"now": now, "since": since, "bucket": bucket, "origin": origin}
        return self._execute("queue_stats_finished", params)

    def job_stats_estimate(self) -> dict[str, dict[str, float]]:
        """``{"queue": {value: share}, "status": {value: share}}``: the share of the job table's rows holding each
        of the most common queues and statuses, from the planner's statistics (empty before the first ANALYZE)."""
        found: dict[str, dict[str, float]] = {"queue": {}, "status": {}}
        for row in self._execute("job_stats_estimate", {}):
            found[row["column_name"]] = dict(zip(row["vals"] or (), row["freqs"] or (), strict=False))
        return found

    def worker_count_alive(self, *, cutoff: datetime) -> dict[str, int]:
        """``{"alive": n, "dead": n}``: worker rows with a heartbeat since ``cutoff``, and the others."""
        return self._execute("worker_count_alive", {"cutoff": cutoff})[0]

    def schedule_oldest_due(self, *, now: datetime) -> datetime | None:
        """When the most overdue enabled schedule was due to fire (``None`` if none is due)."""
        due: datetime | None = self._execute("schedule_oldest_due", {"now": now})[0]["next_fire_at"]
        return due

    def queue_listen(self) -> None:
        self._execute("queue_listen", {})

    def queue_notify_many(self, *, queues: Sequence[str]) -> None:
        """Wake the workers of these queues (a job of a limited queue finished: a slot is free)."""
        if queues:
            self._execute("queue_notify_many", {"queues": list(queues)})

    # -- queue options (flow control) -----------------------------------------------------------------
    def queue_sync_many(self, *, now: datetime, options: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
        """Write default options (``kind, name, concurrency, rate_limit, paused``) but those overridden at run
        time; delete job-name rows not in ``options``. Returns the ``(kind, name)`` rows changed."""
        rows = self._execute(
            "queue_sync_many",
            {
                "now": now,
                "kinds": [o["kind"] for o in options],
                "names": [o["name"] for o in options],
                "concurrencies": [o["concurrency"] for o in options],
                "rate_limits": [o["rate_limit"] for o in options],
                "pauseds": [o["paused"] for o in options],
            },
        )
        return [(row["kind"], row["name"]) for row in rows]

    def queue_set(
        self,
        *,
        now: datetime,
        name: str,
        values: dict[str, Any],
        overridden: Sequence[str],
        reset: Sequence[str],
    ) -> dict[str, Any]:
        """Write the options in ``overridden`` (run-time values) and ``reset`` (back to ``values``, the
        settings'); ``values`` holds all three options for a row created now. Returns the row after."""
        params = {
            "now": now,
            "name": name,
            "concurrency": values["concurrency"],
            "rate_limit": values["rate_limit"],
            "paused": values["paused"],
            "overridden": list(overridden),
            "reset": list(reset),
            "changed": [*overridden, *reset],
        }
        return self._execute("queue_set", params)[0]

    def queue_options_list(self) -> list[dict[str, Any]]:
        """Every ``djtasks_queue`` row (``overrides`` as JSON text)."""
        return self._execute("queue_options_list", {})

    def queue_options_listen(self) -> None:
        self._execute("queue_options_listen", {})

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

    # -- schedules --------------------------------------------------------------------------------------
    def schedule_sync_many(self, *, schedules: Sequence[dict[str, Any]]) -> dict[str, bool]:
        """Upsert definitions (keys as the ``djtasks_schedule`` columns, ``unique`` included); returns
        ``{name: created}``."""
        if not schedules:
            return {}
        rows = self._execute(
            "schedule_sync_many",
            {
                "names": [s["name"] for s in schedules],
                "job_names": [s["job_name"] for s in schedules],
                "crons": [s["cron"] for s in schedules],
                "intervals": [s["interval_seconds"] for s in schedules],
                "ats": [s["at"] for s in schedules],
                "timezones": [s["timezone"] for s in schedules],
                "args": [s["args"] for s in schedules],
                "kwargs": [s["kwargs"] for s in schedules],
                "queues": [s["queue"] for s in schedules],
                "priorities": [s["priority"] for s in schedules],
                "next_fire_ats": [s["next_fire_at"] for s in schedules],
                "sources": [s["source"] for s in schedules],
                "catch_ups": [s["catch_up"] for s in schedules],
                "expires": [s["expires_seconds"] for s in schedules],
                "uniques": [s["unique"] for s in schedules],
            },
        )
        return {row["name"]: row["created"] for row in rows}

    def schedule_orphan_many(self, *, keep: Sequence[str]) -> dict[str, str]:
        """Disable code/settings schedules whose names are not in ``keep``; returns ``{name: source}``."""
        return {row["name"]: row["source"] for row in self._execute("schedule_orphan_many", {"names": list(keep)})}

    def schedule_due_many(self, *, now: datetime, limit: int) -> list[ScheduleRow]:
        rows: list[Any] = self._execute("schedule_due_many", {"now": now, "limit": limit})
        return rows

    def schedule_unplanned_many(self, *, limit: int) -> list[dict[str, Any]]:
        return self._execute("schedule_unplanned_many", {"limit": limit})

    def _schedule_definition(self, row: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "job_name", "queue", "cron", "interval_seconds", "at", "timezone")
        return {key: row[key] for key in keys}

    def schedule_plan(self, *, row: dict[str, Any], next_fire_at: datetime | None) -> bool:
        """Plan ``row`` (as ``schedule_unplanned_many`` read it); False if it changed meanwhile."""
        params = {**self._schedule_definition(row), "next_fire_at": next_fire_at}
        return bool(self._execute("schedule_plan", params))

    def schedule_disable(self, *, row: dict[str, Any], status: str) -> bool:
        """Disable ``row`` (as read) with ``status`` as the reason; False if it changed meanwhile."""
        return bool(self._execute("schedule_disable", {**self._schedule_definition(row), "status": status}))

    def schedule_fire(
        self,
        *,
        id: int,
        due: datetime,
        next_fire_at: datetime | None,
        cron: str,
        interval_seconds: float | None,
        at: datetime | None,
        timezone: str,
    ) -> bool:
        """The compare-and-set that claims a tick; ``True`` for the one caller that won it. The timing columns
        are compared too, so a tick read before an edit cannot be fired on the old timing."""
        params = {
            "id": id,
            "due": due,
            "next_fire_at": next_fire_at,
            "cron": cron,
            "interval_seconds": interval_seconds,
            "at": at,
            "timezone": timezone,
        }
        return bool(self._execute("schedule_fire", params))

    def job_insert_periodic_many(self, *, now: datetime, jobs: Sequence[PeriodicJob]) -> list[UUID]:
        """Insert jobs (``job_insert_many``'s keys plus ``unique_key``); returns the ids actually inserted."""
        if not jobs:
            return []
        rows = self._execute(
            "job_insert_periodic_many",
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
                "unique_keys": [j["unique_key"] for j in jobs],
            },
        )
        return [row["id"] for row in rows]

    def schedule_record_fire(self, *, id: int, fired_at: datetime, job_id: UUID | None, status: str) -> None:
        self._execute("schedule_record_fire", {"id": id, "fired_at": fired_at, "job_id": job_id, "status": status})

    def schedule_next_fire_at(self) -> datetime | None:
        next_fire_at: datetime | None = self._execute("schedule_next_fire_at", {})[0]["next_fire_at"]
        return next_fire_at

    def connection_backend_pid(self) -> int:
        """The pid of the server process running this statement (``pg_backend_pid()``)."""
        return int(self._execute("connection_backend_pid", {})[0]["pid"])

    def connection_timezone_utc(self) -> None:
        self._execute("connection_timezone_utc", {})

    def schedule_listen(self) -> None:
        self._execute("schedule_listen", {})

    def schedule_notify(self, *, name: str) -> None:
        self._execute("schedule_notify", {"name": name})

    def worker_list(self) -> list[dict[str, Any]]:
        """Every worker row (``queues`` as JSON text) with ``running``, its number of running jobs."""
        return self._execute("worker_list", {})

    def worker_rescue_many(
        self,
        *,
        now: datetime,
        cutoff: datetime | None = None,
        worker_ids: Sequence[UUID] = (),
        reason: str | None = None,
        started: Iterable[tuple[UUID, int]] = (),
    ) -> list[dict[str, Any]]:
        """Declare dead the workers silent since before ``cutoff`` and those in ``worker_ids`` (``reason`` says
        why); delete their rows and rescue their running jobs: those that started (``started_at`` set, or
        ``(id, attempt)`` in ``started``) count the attempt, the others go back uncharged. One row per dead
        worker without jobs and per rescued job: ``worker_id, job_id, status, attempt, charged``, and for a job
        its ``name``, ``run_at`` and the last ``error`` entry (JSON text; the new one when ``charged``)."""
        started = list(started)
        params: dict[str, Any] = {"now": now, "cutoff": cutoff, "worker_ids": list(worker_ids), "reason": reason}
        params.update(
            started_ids=[job_id for job_id, _ in started],
            started_attempts=[attempt for _, attempt in started],
            lost_error=_entry(WorkerLost, now),
            cancelled_error=_entry(JobCancelled, now),
        )
        with self._atomic():
            rows = self._execute("worker_rescue_many", params)
            ended = [row["job_id"] for row in rows if row["job_id"] is not None and row["status"] != "queued"]
            self.job_handoff_many(now=now, ids=ended)
        return rows

    # -- maintenance ----------------------------------------------------------------------------------
    def maintenance_lock(self, *, name: str) -> bool:
        """Take the advisory lock of maintenance service ``name`` for the current transaction if nobody holds
        it; the transaction's end releases it. Call it inside a transaction (``atomic()``): in autocommit the
        lock would end with the statement."""
        return bool(self._execute("maintenance_lock", {"name": name})[0]["locked"])

    @contextlib.contextmanager
    def maintenance_locked(self, *, name: str) -> Iterator[bool]:
        """A transaction (``atomic()``) that holds maintenance service ``name``'s lock if it was free: yields
        whether it does. The statements run inside commit with it, and the lock goes at its end."""
        with self._atomic():
            yield self.maintenance_lock(name=name)
