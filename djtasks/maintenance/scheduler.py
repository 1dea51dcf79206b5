"""The periodic scheduler: syncs code and settings schedules to rows, and fires due ticks exactly once.

Any number of schedulers may run (``runbeat`` on every host, ``runworker --beat``). None takes a lock: each
fires a tick by a compare-and-set on the schedule row (``schedule_fire``: ``next_fire_at`` moves on only if it
still holds the tick that was due) and inserts the tick's job in the same transaction. Of schedulers racing for
one tick, the first UPDATE wins; the others block on the row lock until it commits, then match nothing. If the
winner rolls back, the row is unchanged and a later pass fires the tick. So a tick is enqueued exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured

from .. import cron, serialization
from ..conf import djtasks_settings
from ..cursors import django_store
from ..exceptions import NotRegistered
from ..ids import uuid7
from ..periodic import row_errors
from ..registry import registry
from ..rows import PeriodicJob, ScheduleRow
from ..schedules import ScheduleDef, defined_schedules
from ..store import Store

logger = logging.getLogger("djtasks.beat")

DUE_BATCH = 100  # due schedules read per pass; more wait for the next pass (which follows at once)
STATUS_MAX_CHARS = 200  # djtasks_schedule.last_status
PLANNED_FIELDS = (
    "job_name",
    "cron",
    "interval_seconds",
    "at",
    "timezone",
    "args",
    "kwargs",
    "queue",
    "priority",
    "expires_seconds",
)


@dataclass(frozen=True)
class FireOutcome:
    """What one fire did: the ticks it covered, the jobs it inserted, the status it recorded."""

    name: str
    ticks: tuple[datetime, ...]
    job_ids: tuple[UUID, ...]
    status: str
    next_fire_at: datetime | None


@dataclass
class SchedulerResult:
    """One ``run_once`` pass: schedules this scheduler fired, due ones another scheduler fired first (``lost``),
    those that failed, and when the earliest schedule is due next."""

    fired: list[FireOutcome] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    next_fire_at: datetime | None = None
    planned: list[str] = field(default_factory=list)  # rows written past Schedule.save(), now planned
    disabled: list[str] = field(default_factory=list)  # ... or switched off: their definition cannot fire

    @property
    def jobs(self) -> int:
        return sum(len(f.job_ids) for f in self.fired)


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]
    orphaned: list[str]


def _is_connection_error(exc: BaseException) -> bool:
    import django.db
    import psycopg

    return isinstance(
        exc, (psycopg.OperationalError, psycopg.InterfaceError, django.db.OperationalError, django.db.InterfaceError)
    )


def timing_of(row: Mapping[str, Any]) -> cron.Timing:
    """The ``Timing`` of a schedule row (``ValueError`` if the row's timing is unusable)."""
    return cron.Timing.make(cron=row["cron"] or None, every=row["interval_seconds"], at=row["at"], tz=row["timezone"])


def row_of(obj: Any) -> ScheduleRow:
    """A ``Schedule`` model instance as the dict ``schedule_due_many`` returns (arguments as JSON text)."""
    return {
        "id": obj.pk,
        "name": obj.name,
        "job_name": obj.job_name,
        "cron": obj.cron,
        "interval_seconds": obj.interval_seconds,
        "at": obj.at,
        "timezone": obj.timezone,
        "args": serialization.dumps(obj.args),
        "kwargs": serialization.dumps(obj.kwargs),
        "queue": obj.queue,
        "priority": obj.priority,
        "next_fire_at": obj.next_fire_at,
        "catch_up": obj.catch_up,
        "expires_seconds": obj.expires_seconds,
        "unique": obj.unique,
    }


class Scheduler:
    """Fires due schedules through ``store``; ``atomic()`` opens the transaction a fire runs in."""

    def __init__(self, store: Store, atomic: Callable[[], AbstractContextManager[Any]]) -> None:
        self.store = store
        self.atomic = atomic

    @classmethod
    def for_connection(cls, conn: Any) -> Scheduler:
        """On a worker-style ``WorkerConnection`` (autocommit psycopg; a fire is one explicit transaction)."""

        def atomic() -> AbstractContextManager[Any]:
            transaction: AbstractContextManager[Any] = conn.connection.transaction()
            return transaction  # looked up per fire: the connection may have been reopened

        return cls(conn.store, atomic)

    @classmethod
    def for_django(cls, alias: str | None = None) -> Scheduler:
        """On Django's connection (joins the caller's transaction, e.g. an admin request's)."""
        from django.db import transaction

        alias = alias or djtasks_settings.DATABASE
        return cls(django_store(alias), lambda: transaction.atomic(using=alias))

    # -- sync -----------------------------------------------------------------------------------------
    def sync(self, now: datetime, definitions: Iterable[ScheduleDef] | None = None) -> SyncResult:
        """Write code and settings definitions to rows (by name) and disable rows whose definition is gone.

        ``next_fire_at`` of an existing row is kept unless its timing changed, so restarts never shift or
        repeat a tick. Rows made in the admin are left alone (a definition of the same name takes one over).
        """
        from django.conf import settings

        if definitions is None:
            definitions = defined_schedules(djtasks_settings.BEAT_SCHEDULE)
        definitions = list(definitions)
        unknown = [f"{d.name!r} (job {d.job!r})" for d in definitions if d.job not in registry]
        if unknown:
            raise ImproperlyConfigured(
                f"periodic schedule(s) {', '.join(unknown)} name jobs that no @job registered (system check djtasks.E006)"
            )
        default_tz = settings.TIME_ZONE or "UTC"
        rows: list[dict[str, Any]] = []
        for d in definitions:
            timing = d.timing(default_tz)
            rows.append(
                {
                    "name": d.name,
                    "job_name": d.job,
                    "cron": d.cron or "",
                    "interval_seconds": d.every,
                    "at": d.at,
                    "timezone": timing.tz.key,
                    "args": d.args,
                    "kwargs": d.kwargs,
                    "queue": d.queue or "",
                    "priority": d.priority,
                    "next_fire_at": cron.first_fire(timing, now),
                    "source": d.source,
                    "catch_up": d.catch_up,
                    "expires_seconds": d.expires,
                    "unique": d.unique,
                }
            )
        with self.atomic():
            synced = self.store.schedule_sync_many(schedules=rows)
            orphaned = self.store.schedule_orphan_many(keep=[r["name"] for r in rows])
            self.store.schedule_notify(name="*")
        for name, source in orphaned.items():
            logger.warning("beat: schedule %r is no longer defined in %s; disabled it", name, source)
        return SyncResult(
            created=sorted(n for n, created in synced.items() if created),
            updated=sorted(n for n, created in synced.items() if not created),
            orphaned=sorted(orphaned),
        )

    # -- firing ---------------------------------------------------------------------------------------
    def run_once(self, now: datetime) -> SchedulerResult:
        """Fire every schedule due at ``now`` (each at most once per pass) and say when the next is due."""
        result = SchedulerResult()
        self.plan_unplanned(now, result)
        for row in self.store.schedule_due_many(now=now, limit=DUE_BATCH):
            try:
                outcome = self.fire(row, now)
            except Exception as exc:  # one broken schedule must not stop the others
                if _is_connection_error(exc):
                    raise
                logger.exception("beat: firing schedule %r failed; it stays due", row["name"])
                result.failed.append(row["name"])
                continue
            if outcome is None:
                result.lost.append(row["name"])
            else:
                result.fired.append(outcome)
        result.next_fire_at = self.store.schedule_next_fire_at()
        return result

    def plan_unplanned(self, now: datetime, result: SchedulerResult) -> None:
        """Validate and plan rows that have no next tick (written past ``Schedule.save()``); disable, with the
        reason in ``last_status`` and the log, those that cannot fire. Each is a compare-and-set on the row as
        read, so schedulers doing it at once, or an edit meanwhile, never clash."""
        for row in self.store.schedule_unplanned_many(limit=DUE_BATCH):
            try:
                args, kwargs = serialization.loads(row["args"]), serialization.loads(row["kwargs"])
            except ValueError:
                args, kwargs = None, None
            errors = row_errors(
                args=args, kwargs=kwargs, **{f: row[f] for f in PLANNED_FIELDS if f not in ("args", "kwargs")}
            )
            if errors:
                reason = "; ".join(
                    f"{field}: {message}" if field != "__all__" else message for field, message in errors.items()
                )
                status = f"disabled: {reason}"[:STATUS_MAX_CHARS]
                if self.store.schedule_disable(row=row, status=status):
                    logger.error("beat: schedule %r cannot fire (%s); disabled it", row["name"], reason)
                    result.disabled.append(row["name"])
                continue
            next_fire_at = cron.first_fire(timing_of(row), now)
            if self.store.schedule_plan(row=row, next_fire_at=next_fire_at):
                logger.info(
                    "beat: schedule %r planned, next %s",
                    row["name"],
                    next_fire_at.isoformat() if next_fire_at else "never",
                )
                result.planned.append(row["name"])

    def fire(self, row: ScheduleRow, now: datetime) -> FireOutcome | None:
        """Fire the due tick ``row["next_fire_at"]`` of one schedule row; ``None`` if another scheduler won it."""
        due = row["next_fire_at"]
        if due is None:  # schedule_due_many returns only rows with a due tick
            return None
        error = ""
        try:
            timing = timing_of(row)
        except ValueError as exc:  # written straight into the table: stop it rather than fail every pass
            plan, error = cron.Plan((), None), f"error: {exc}; stopped"
        else:
            expires = timedelta(seconds=row["expires_seconds"]) if row["expires_seconds"] else None
            plan = cron.plan(timing, due, now, catch_up=row["catch_up"], expires=expires, unique=row["unique"])
        jobs: list[PeriodicJob] = []
        if not error:
            try:
                jobs = self.jobs_for(row, plan.ticks)
            except (NotRegistered, ValueError) as exc:
                error = f"error: {exc}"
        with self.atomic():
            won = self.store.schedule_fire(
                id=row["id"],
                due=due,
                next_fire_at=plan.next_fire_at,
                cron=row["cron"],
                interval_seconds=row["interval_seconds"],
                at=row["at"],
                timezone=row["timezone"],
            )
            if not won:
                logger.debug("beat: tick %s of %r was fired by another scheduler", due.isoformat(), row["name"])
                return None
            inserted = self.store.job_insert_periodic_many(now=now, jobs=jobs)
            status = error or _status(plan, len(jobs), len(inserted))
            self.store.schedule_record_fire(
                id=row["id"],
                fired_at=plan.ticks[-1] if plan.ticks else due,
                job_id=inserted[-1] if inserted else None,
                status=status[:STATUS_MAX_CHARS],
            )
        log = logger.error if error else logger.info
        log(
            "beat: %r tick %s: %s; next %s",
            row["name"],
            (plan.ticks[-1] if plan.ticks else due).isoformat(),
            status,
            plan.next_fire_at.isoformat() if plan.next_fire_at else "never",
        )
        return FireOutcome(row["name"], plan.ticks, tuple(inserted), status, plan.next_fire_at)

    def run_now(self, row: ScheduleRow, now: datetime) -> FireOutcome:
        """Enqueue a schedule's job at once, outside its timing (the admin's "run now"); ``next_fire_at`` is left
        as it is. A unique schedule whose previous job is still active enqueues nothing."""
        jobs = self.jobs_for(row, (now,))
        with self.atomic():
            inserted = self.store.job_insert_periodic_many(now=now, jobs=jobs)
            status = "run now: enqueued" if inserted else "run now: skipped, the previous job is still active"
            self.store.schedule_record_fire(
                id=row["id"], fired_at=now, job_id=inserted[0] if inserted else None, status=status
            )
        logger.info("beat: %r %s", row["name"], status)
        return FireOutcome(row["name"], (now,), tuple(inserted), status, row["next_fire_at"])

    def jobs_for(self, row: ScheduleRow, ticks: Iterable[datetime]) -> list[PeriodicJob]:
        """Job rows for ticks of a schedule: ``run_at`` is the tick (so each tick's job can be told apart) and
        ``expires_at`` counts from it. ``NotRegistered``/``ValueError`` if the job or its queue is unknown."""
        job = registry.get(row["job_name"])
        conf = djtasks_settings.get()
        queue = row["queue"] or conf.route(job.name) or job.queue or conf.DEFAULT_QUEUE
        if queue not in djtasks_settings.QUEUES:
            raise ValueError(f"queue {queue!r} is not in DJTASKS['QUEUES']")
        priority = job.priority if row["priority"] is None else row["priority"]
        expires = timedelta(seconds=row["expires_seconds"]) if row["expires_seconds"] else None
        unique_key = f"schedule:{row['name']}" if row["unique"] else None
        return [
            {
                "id": uuid7(),
                "name": job.name,
                "queue": queue,
                "priority": priority,
                "args": row["args"],
                "kwargs": row["kwargs"],
                "run_at": tick,
                "expires_at": tick + expires if expires else None,
                "max_attempts": job.max_attempts,
                "unique_key": unique_key,
            }
            for tick in ticks
        ]


def _status(plan: cron.Plan, planned: int, inserted: int) -> str:
    parts = []
    if inserted:
        parts.append("enqueued" if inserted == 1 else f"enqueued {inserted} jobs")
    if inserted < planned:
        parts.append("skipped: the previous job is still queued or running")
    if plan.skipped and inserted:
        parts.append("missed ticks merged")
    if plan.expired:
        parts.append("expired ticks dropped")
    return "; ".join(parts) or "nothing due"
