"""Schema of record for djtasks' tables. Runtime reads and writes go through ``store.py``; the admin and
operators read through these models."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from . import serialization
from .exceptions import SerializationError
from .status import JobStatus

# Plain strings (not the enum) so migrations stay stable.
ACTIVE = Q(status__in=["queued", "running"])
# A partial unique index cannot change its predicate without a rebuild; a waiting workflow step is outside it.
FINISHED = Q(status__in=["succeeded", "failed", "cancelled"])
PROBLEMS = Q(status__in=["failed", "cancelled"])
# A running row is owned by a worker; its function runs only once started_at is set (claimed ahead before).
STARTED = Q(status="running", started_at__isnull=False)
CLAIMED = Q(status="running", started_at__isnull=True)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    queue = models.CharField(max_length=100)
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=[(s.value, s.value) for s in JobStatus])
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    run_at = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="when a worker took it; started_at is when its function started"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    attempt = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=1)
    worker_id = models.UUIDField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list)
    unique_key = models.TextField(null=True, blank=True)
    group_id = models.UUIDField(null=True, blank=True)
    on_success = models.JSONField(null=True, blank=True)
    on_failure = models.JSONField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Cancel by killing the worker process (the supervisor acts on it), not by asking the job.
    terminate_requested = models.BooleanField(default=False, db_default=False)
    time_limit = models.FloatField(null=True, blank=True, help_text="seconds; past it the process is killed")
    soft_time_limit = models.FloatField(
        null=True, blank=True, help_text="seconds; past it SoftTimeLimitExceeded is raised in the job"
    )
    progress = models.JSONField(null=True, blank=True)
    # Workflows (canvas.py): the job or group whose result this job takes as input (its chain parent, or its
    # chord header); NULL for a job outside any workflow and for a workflow's first steps.
    parent_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "djtasks_job"
        indexes = [
            # The claim index: only waiting jobs, so history never slows a claim.
            models.Index(
                fields=["queue", "-priority", "run_at", "id"],
                name="djtasks_job_claim",
                condition=Q(status="queued"),
            ),
            models.Index(fields=["worker_id"], name="djtasks_job_running", condition=Q(status="running")),
            # The supervisors' terminate poll (every 0.5 s): through djtasks_job_running it read every entry of
            # its workers, dead ones included, about 9 ms a poll during a drain; this one is nearly always empty.
            models.Index(
                fields=["worker_id"],
                name="djtasks_job_terminate",
                condition=Q(status="running", terminate_requested=True),
            ),
            models.Index(fields=["finished_at"], name="djtasks_job_finished", condition=FINISHED),
            # The admin's "failed"/"cancelled" filters, newest first: few rows, and a job enters the index only
            # when it fails or is cancelled, so enqueue, claim and success never pay for it. (The unfiltered
            # list walks the primary key backwards: ids are UUIDv7, ordered by enqueue time.)
            models.Index(fields=["id"], name="djtasks_job_problems", condition=PROBLEMS),
            # Workflow steps waiting for their input (the admin's "waiting" filter); no other job enters it.
            models.Index(fields=["id"], name="djtasks_job_waiting", condition=Q(status="waiting")),
            # Group members (admin filter, GroupResult's failed members); jobs outside groups are not in it.
            models.Index(fields=["group_id"], name="djtasks_job_group", condition=Q(group_id__isnull=False)),
            # unique_for: recent jobs with a key, finished ones included (the unique constraint covers active ones).
            models.Index(
                fields=["unique_key", "enqueued_at"],
                name="djtasks_job_unique_key",
                condition=Q(unique_key__isnull=False),
            ),
        ]
        permissions = [
            ("retry_job", "Can retry failed or cancelled jobs"),
            ("cancel_job", "Can cancel jobs"),
            ("requeue_job", "Can requeue copies of finished jobs"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["unique_key"],
                name="djtasks_job_unique_active",
                condition=ACTIVE & Q(unique_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}] {self.id}"


class Worker(models.Model):
    id = models.UUIDField(primary_key=True, editable=False)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    class Meta:
        db_table = "djtasks_worker"

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


def default_timezone() -> str:
    """``settings.TIME_ZONE`` (read when a schedule is created, never at import)."""
    from django.conf import settings

    return settings.TIME_ZONE or "UTC"


SCHEDULE_TIMING_FIELDS = ("cron", "interval_seconds", "at", "timezone")
SCHEDULE_CHECKED_FIELDS = (
    "job_name",
    *SCHEDULE_TIMING_FIELDS,
    "args",
    "kwargs",
    "queue",
    "priority",
    "expires_seconds",
)
# Set by djtasks.periodic (a layer above): "errors" validates a definition (``row_errors``), "notify" wakes the
# schedulers. The models import nothing of djtasks above them.
SCHEDULE_HOOKS: dict[str, Callable[..., Any]] = {}

# Written by the schedulers: a save leaves them as they are in the database unless the caller changed them.
SCHEDULE_STATUS_FIELDS = ("next_fire_at", "last_fire_at", "last_job_id", "last_status")


class Schedule(models.Model):
    """A periodic schedule. Rows come from code (``@periodic``), settings (``BEAT_SCHEDULE``), the admin, or
    your own code through the ORM (``Schedule.objects.create(...)``, ``djtasks.periodic.add_schedule``).

    Exactly one of ``cron`` (read in ``timezone``), ``interval_seconds`` or ``at`` (once) says when it fires.
    ``next_fire_at`` is the tick that fires next: a scheduler fires it by moving ``next_fire_at`` on with a
    compare-and-set and inserting the job in the same transaction, so each tick fires once however many
    schedulers run. ``NULL`` on an enabled row means "not planned yet" (a scheduler plans it at its next pass),
    except on a one-off that fired, which never fires again.

    ``save()`` validates like the admin form (``full_clean()``: a bad cron, an unknown job name or queue raise
    ``ValidationError`` and nothing is written), plans ``next_fire_at`` when the row is new, re-timed or
    switched back on, writes the scheduler-owned fields only if you changed them, and wakes the running
    schedulers when the transaction commits. Writes that skip ``save()`` (``QuerySet.update``,
    ``bulk_create``, ``loaddata``, raw SQL) are caught by the schedulers: a row without a next tick, or whose
    timing, job or queue changed (a database trigger clears its ``next_fire_at`` then), is validated and
    planned at the next pass (within about a second), or disabled with the reason in ``last_status`` and the
    log.
    """

    SOURCES = [("code", "code"), ("settings", "settings"), ("admin", "admin")]
    CATCH_UP = [("skip", "skip: fire once after downtime"), ("all", "all: one job per missed tick")]

    name = models.CharField(max_length=200, unique=True)
    job_name = models.CharField(max_length=255, help_text="the registered name of a @job (module.function)")
    cron = models.CharField(max_length=200, blank=True, default="", help_text="5 fields, e.g. */5 * * * *")
    interval_seconds = models.FloatField(null=True, blank=True, help_text="or: every N seconds (at least 1)")
    at = models.DateTimeField(null=True, blank=True, help_text="or: once, at this time")
    timezone = models.CharField(max_length=64, default=default_timezone, help_text="IANA zone the cron is read in")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100, blank=True, default="", help_text="blank: the job's queue")
    priority = models.SmallIntegerField(null=True, blank=True, help_text="blank: the job's priority")
    enabled = models.BooleanField(default=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES, default="admin", editable=False)
    catch_up = models.CharField(max_length=8, choices=CATCH_UP, default="skip")
    expires_seconds = models.FloatField(
        null=True, blank=True, help_text="a job not started this long after its tick is cancelled"
    )
    unique = models.BooleanField(default=False, help_text="skip a tick while the previous job is queued or running")
    orphaned = models.BooleanField(
        default=False, editable=False, help_text="was defined in code/settings and no longer is: disabled"
    )
    last_fire_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_job_id = models.UUIDField(null=True, blank=True, editable=False)
    last_status = models.CharField(max_length=200, blank=True, default="", editable=False)

    class Meta:
        db_table = "djtasks_schedule"
        indexes = [
            models.Index(fields=["next_fire_at"], name="djtasks_schedule_due", condition=Q(enabled=True)),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(~Q(cron=""), interval_seconds__isnull=True, at__isnull=True)
                    | Q(cron="", interval_seconds__isnull=False, at__isnull=True)
                    | Q(cron="", interval_seconds__isnull=True, at__isnull=False)
                ),
                name="djtasks_schedule_one_timing",
            ),
            models.CheckConstraint(
                condition=Q(interval_seconds__isnull=True) | Q(interval_seconds__gte=1),
                name="djtasks_schedule_interval_min",
            ),
            models.CheckConstraint(condition=Q(catch_up__in=["skip", "all"]), name="djtasks_schedule_catch_up"),
            models.CheckConstraint(
                condition=Q(source__in=["code", "settings", "admin"]), name="djtasks_schedule_source"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def check_arguments(self) -> None:
        """Raise ``SerializationError`` if ``args``/``kwargs`` hold what a job's arguments cannot (the checks
        of ``.delay()``): a schedule must never fire jobs that cannot be stored. The size limit,
        ``DJTASKS["MAX_ARGS_BYTES"]``, is the admin form's to check (settings are a layer above models)."""
        if not isinstance(self.args, list):
            raise SerializationError(
                f"schedule {self.name!r}: args must be a JSON list, got {type(self.args).__name__}"
            )
        if not isinstance(self.kwargs, dict):
            raise SerializationError(
                f"schedule {self.name!r}: kwargs must be a JSON object, got {type(self.kwargs).__name__}"
            )
        serialization.dumps_args(self.args, self.kwargs, max_bytes=None, where=f"schedule {self.name!r}")

    def clean(self) -> None:
        super().clean()
        try:
            self.check_arguments()
        except SerializationError as exc:
            if exc.path is None:  # not one value: the size, or the wrong kind of container
                raise ValidationError(str(exc)) from None
            raise ValidationError({"kwargs" if exc.path.startswith("kwargs") else "args": str(exc)}) from None

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any, **kwargs: Any) -> Schedule:
        obj = super().from_db(db, field_names, values, **kwargs)  # Django 6 passes fetch_mode
        obj._remember_loaded()
        return obj

    def _remember_loaded(self) -> None:
        fields = (*SCHEDULE_CHECKED_FIELDS, *SCHEDULE_STATUS_FIELDS, "enabled")
        self._loaded = {f: getattr(self, f) for f in fields if f in self.__dict__}

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_loaded()

    def clean_fields(self, exclude: Any = None) -> None:
        errors: dict[str, list[str]] = {}
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            errors = exc.message_dict
        row_errors = SCHEDULE_HOOKS.get("errors")
        if row_errors is None:  # djtasks not imported: nothing registered a job either
            if errors:
                raise ValidationError(errors)
            return
        skip = set(exclude or ()) | set(errors)
        if self.cron:
            self.cron = self.cron.strip()
        found = row_errors(**{f: getattr(self, f) for f in SCHEDULE_CHECKED_FIELDS})
        for field, message in found.items():
            if field == "__all__":
                if not skip & set(SCHEDULE_TIMING_FIELDS):
                    errors.setdefault(field, []).append(message)
            elif field not in skip:
                errors.setdefault(field, []).append(message)
        if errors:
            raise ValidationError(errors)

    def plan(self, now: datetime) -> datetime | None:
        """The tick to fire next for a new, re-timed or re-enabled schedule: the first after ``now``; a one-off
        (``at``) that already fired stays done unless its time was changed."""
        from .cron import Timing, first_fire

        loaded = getattr(self, "_loaded", {})
        retimed = any(loaded.get(f, getattr(self, f)) != getattr(self, f) for f in SCHEDULE_TIMING_FIELDS)
        if not retimed and self.at is not None and self.last_fire_at is not None and self.last_fire_at >= self.at:
            return None
        timing = Timing.make(cron=self.cron or None, every=self.interval_seconds, at=self.at, tz=self.timezone)
        return first_fire(timing, now)

    def _needs_plan(self) -> bool:
        loaded = getattr(self, "_loaded", None)
        if not self.enabled:
            return False
        if loaded is None or self._state.adding:
            return self.next_fire_at is None  # a value given with a new row (a fixture, a test) is kept
        if "next_fire_at" in loaded and self.next_fire_at != loaded["next_fire_at"]:
            return False  # the caller set it
        changed = [f for f in SCHEDULE_TIMING_FIELDS if f in loaded and loaded[f] != getattr(self, f)]
        switched_on = loaded.get("enabled") is False
        return bool(changed) or switched_on or self.next_fire_at is None

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (``ValidationError``), plan ``next_fire_at`` if needed, write, and tell the schedulers."""
        from django.utils import timezone

        update_fields = kwargs.get("update_fields")
        if self.enabled or self._state.adding:
            # A schedule that can fire must be valid (its arguments included, through clean()); switching one
            # off (say, after its job was removed from the code) is always allowed.
            self.full_clean(exclude=None, validate_unique=update_fields is None, validate_constraints=False)
        else:
            self.check_arguments()  # still nothing the database cannot store: refused before any SQL
        if (update_fields is None or "next_fire_at" not in update_fields) and self._needs_plan():
            self.next_fire_at = self.plan(timezone.now())
            if update_fields is not None:
                update_fields = [*update_fields, "next_fire_at"]
        loaded = getattr(self, "_loaded", None)
        if update_fields is None and loaded is not None and not self._state.adding and not kwargs.get("force_insert"):
            # A full save of a row read earlier: leave what a scheduler wrote meanwhile (its next tick, its last
            # fire) alone, or a stale next_fire_at written back would fire a tick twice.
            untouched = {f for f in SCHEDULE_STATUS_FIELDS if f in loaded and getattr(self, f) == loaded[f]}
            update_fields = [
                f.attname for f in self._meta.concrete_fields if not f.primary_key and f.attname not in untouched
            ]
        if update_fields is not None:
            kwargs["update_fields"] = update_fields
        super().save(*args, **kwargs)
        self._remember_loaded()
        notify = SCHEDULE_HOOKS.get("notify")
        if notify is not None:
            notify(self.name)  # delivered on commit: schedulers re-read at once


class UUIDArrayField(models.Field):  # type: ignore[type-arg]
    """A ``uuid[]`` column, read and written as a list of UUIDs (psycopg adapts both ways).

    Not ``django.contrib.postgres``' ``ArrayField``: since Django 6.1 that one requires ``django.contrib.postgres``
    in ``INSTALLED_APPS`` (check ``postgres.E005``), which a site should not have to add for djtasks' sake."""

    description = "Array of UUIDs"

    def db_type(self, connection: Any) -> str:
        return "uuid[]"


class Group(models.Model):
    """A group of jobs (``djtasks.group``) and, for a chord, the counter its callback waits on.

    ``members`` are the jobs whose results make the group's result, in the order given (for a member that is a
    chain, its last step). ``remaining`` counts members that have not succeeded yet; it is decremented in the
    transaction that records a member as succeeded, and the transaction that brings it to 0 releases the jobs
    listed in ``on_success`` (the chord callback) with the members' results. ``parent_id`` is the job the
    members wait for when the group is a step of a chain.
    """

    id = models.UUIDField(primary_key=True, editable=False)
    total = models.IntegerField()
    remaining = models.IntegerField()
    members = UUIDArrayField()
    on_success = models.JSONField(null=True, blank=True)
    parent_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "djtasks_group"

    def __str__(self) -> str:
        return f"group {self.id} ({self.total - self.remaining}/{self.total} succeeded)"


class Queue(models.Model):
    """Run-time options of a queue (``kind="queue"``) or of a job name with ``@job(concurrency=...)``
    (``kind="job"``). Workers read these rows, not the settings: ``DJTASKS['QUEUES']`` gives the defaults,
    written when a worker starts, and an option changed at run time (admin, ``manage.py djtasks
    queue|pause|resume``, ``djtasks.pause_queue``) is listed in ``overrides`` and wins over the settings
    until it is reset. ``rate_tat`` is the rate limiter's state (see ``djtasks.flow``); a limited queue's
    claims lock its row, so they never overshoot."""

    KINDS = [("queue", "queue"), ("job", "job")]

    kind = models.CharField(max_length=8, choices=KINDS, default="queue", editable=False)
    name = models.CharField(max_length=255, editable=False)
    concurrency = models.IntegerField(
        null=True, blank=True, help_text="at most this many jobs running at once across all workers; blank: no limit"
    )
    rate_limit = models.CharField(
        max_length=32, blank=True, default="", help_text="at most this many starts per window, e.g. 100/m, 10/s, 500/h"
    )
    paused = models.BooleanField(default=False, help_text="nothing starts; running jobs finish; enqueueing works")
    overrides = models.JSONField(default=list, blank=True, editable=False)
    rate_tat = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "djtasks_queue"
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="djtasks_queue_kind_name"),
            models.CheckConstraint(condition=Q(kind__in=["queue", "job"]), name="djtasks_queue_kind"),
            models.CheckConstraint(
                condition=Q(concurrency__isnull=True) | Q(concurrency__gte=1), name="djtasks_queue_concurrency"
            ),
        ]
        permissions = [("pause_queue", "Can pause and resume queues")]

    def __str__(self) -> str:
        return self.name if self.kind == "queue" else f"job {self.name}"


class QueueDashboard(Job):
    """No data of its own: gives the queue dashboard its place in the admin's app list (see admin/dashboard.py)."""

    class Meta:
        proxy = True
        verbose_name = "queue dashboard"
        verbose_name_plural = "queue dashboard"
        default_permissions = ()
