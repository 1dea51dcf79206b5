"""Schema of record for djtasks' tables. Runtime reads and writes go through ``store.py``; the admin and
operators read through these models."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

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


class Schedule(models.Model):
    """A periodic schedule. Rows come from code (``@periodic``), settings (``BEAT_SCHEDULE``) or the admin.

    Exactly one of ``cron`` (read in ``timezone``), ``interval_seconds`` or ``at`` (once) says when it fires.
    ``next_fire_at`` is the tick that fires next: a scheduler fires it by moving ``next_fire_at`` on with a
    compare-and-set and inserting the job in the same transaction, so each tick fires once however many
    schedulers run. ``NULL`` means it never fires again (a one-off that fired).
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
    members = ArrayField(models.UUIDField())
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
