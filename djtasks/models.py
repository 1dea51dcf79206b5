"""Schema of record for djtasks' tables. Runtime reads and writes go through ``store.py``; the admin and
operators read through these models."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from .status import JobStatus

# Plain strings (not the enum) so migrations stay stable.
ACTIVE = Q(status__in=["queued", "running"])
FINISHED = Q(status__in=["succeeded", "failed", "cancelled"])


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
