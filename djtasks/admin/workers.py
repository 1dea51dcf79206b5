"""The workers admin: every worker process, alive or dead by its heartbeat, and the jobs it runs now.

Read-only: worker rows belong to the workers (and to the rescuer, which deals with dead ones).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..conf import djtasks_settings
from ..dashboard import format_duration
from ..models import STARTED, Job, Worker

CURRENT_JOBS_SHOWN = 50  # running jobs listed on a worker's page


def _alive_since() -> Any:
    return timezone.now() - timedelta(seconds=djtasks_settings.WORKER_TIMEOUT)


def is_alive(worker: Worker) -> bool:
    """A worker is alive while its last heartbeat is at most ``WORKER_TIMEOUT`` old."""
    return bool(worker.heartbeat_at >= _alive_since())


class AliveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "alive"), ("no", "dead (no heartbeat)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        if self.value() == "yes":
            return queryset.filter(heartbeat_at__gte=_alive_since())
        if self.value() == "no":
            return queryset.filter(heartbeat_at__lt=_alive_since())
        return queryset


def _jobs_url(**params: Any) -> str:
    return reverse("admin:djtasks_job_changelist") + "?" + urlencode(params)


# What the list and the detail page both show.
_WORKER_COLUMNS = (
    "state",
    "hostname",
    "pid",
    "queue_list",
    "concurrency",
    "started",
    "last_heartbeat",
    "current_jobs",
)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("__str__", *_WORKER_COLUMNS)
    list_filter = (AliveFilter,)
    ordering = ("hostname", "pid")
    fields = ("id", *_WORKER_COLUMNS, "current_job_list")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        # One subquery per worker row through the running-jobs index (status='running', worker_id).
        running = (
            Job.objects.filter(STARTED, worker_id=OuterRef("id"))
            .order_by()
            .values("worker_id")
            .annotate(n=Count("*"))
            .values("n")
        )
        rows: QuerySet[Worker] = (
            super().get_queryset(request).annotate(running=Coalesce(Subquery(running, output_field=IntegerField()), 0))
        )
        return rows

    @admin.display(description="state")
    def state(self, worker: Worker) -> str:
        alive = is_alive(worker)
        return format_html(
            '<span class="djtasks-status djtasks-{}">{}</span>',
            "succeeded" if alive else "failed",
            "alive" if alive else "dead",
        )

    @admin.display(description="queues")
    def queue_list(self, worker: Worker) -> str:
        return ", ".join(worker.queues or [])

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> str:
        return f"{timezone.localtime(worker.started_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="last heartbeat", ordering="heartbeat_at")
    def last_heartbeat(self, worker: Worker) -> str:
        age = (timezone.now() - worker.heartbeat_at).total_seconds()
        return f"{format_duration(max(age, 0.0))} ago"

    @admin.display(description="current jobs")
    def current_jobs(self, worker: Worker) -> str:
        running = getattr(worker, "running", 0)
        url = _jobs_url(status="running", worker_id=worker.id)
        return format_html('<a href="{}">{} / {}</a>', url, running, worker.concurrency)

    @admin.display(description="running now")
    def current_job_list(self, worker: Worker) -> str:
        jobs = Job.objects.filter(STARTED, worker_id=worker.id).order_by("started_at")[:CURRENT_JOBS_SHOWN]
        rows = [(reverse("admin:djtasks_job_change", args=[job.id]), job.name, job.id) for job in jobs]
        if not rows:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> <small>{}</small></li>', rows))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False
