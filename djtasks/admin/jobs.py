"""The jobs admin: a read-only list and detail page, and the retry / cancel / requeue / delete actions.

Built for a table of millions of rows: the list is ordered by id (UUIDv7, so newest first is a backward walk of
the primary key), counts are estimated (``pagination.py``), filter choices come from settings and the job
registry instead of ``SELECT DISTINCT``, facets are off, and only the id ordering is offered for sorting. Rows are
never edited by hand: every change goes through ``djtasks.operations``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..conf import djtasks_settings
from ..dashboard import format_duration
from ..models import CLAIMED, STARTED, Job, Worker
from ..operations import BATCH_SIZE, cancel_jobs, delete_jobs, requeue_jobs, retry_jobs
from ..registry import registry
from ..status import shown_status
from .pagination import EstimatedCountPaginator
from .workflows import GroupFilter, progress_text, workflow

LIST_PER_PAGE = 100
FROM_DETAIL = "_from_detail"  # posted by the detail page's buttons: come back there after the action
DELETE_SAMPLE = 20  # jobs listed by name on the delete confirmation page
PRETTY_ONE_LINE = 100  # JSON shorter than this many characters stays on one line


class StatusFilter(admin.SimpleListFilter):
    """Status, plus "due now" and "scheduled" (queued jobs whose run_at is past or future)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("waiting", "waiting (workflow step)"),
            ("queued", "queued"),
            ("due", "queued, due now"),
            ("scheduled", "queued, scheduled later"),
            ("claimed", "claimed ahead by a worker, not started"),
            ("running", "running"),
            ("succeeded", "succeeded"),
            ("failed", "failed"),
            ("cancelled", "cancelled"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if value == "due":
            return queryset.filter(status="queued", run_at__lte=timezone.now())
        if value == "scheduled":
            return queryset.filter(status="queued", run_at__gt=timezone.now())
        if value == "claimed":
            return queryset.filter(CLAIMED)
        if value == "running":
            return queryset.filter(STARTED)
        if value:
            return queryset.filter(status=value)
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Queues from ``DJTASKS['QUEUES']``: no scan of the table for its distinct values."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in djtasks_settings.QUEUES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class NameFilter(admin.SimpleListFilter):
    """Job names from the registry (every ``@job`` this site knows)."""

    title = "job name"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(job.name for job in registry.all())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(name=self.value()) if self.value() else queryset


def _time(value: datetime | None) -> str:
    """Compact for the list: the time of day for today, else the date and minute; the hover title (and the
    detail page) give the full timestamp."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    shown = "%H:%M:%S" if local.date() == timezone.localdate() else "%Y-%m-%d %H:%M"
    return format_html('<span title="{}">{}</span>', f"{local:%Y-%m-%d %H:%M:%S.%f %Z}", f"{local:{shown}}")


def _trace_id(trace_context: Any) -> str | None:
    """The trace id in a row's W3C ``traceparent`` (the trace of the request that enqueued it), to look it up in
    a tracing backend; None when the row carries none or something else."""
    header = trace_context.get("traceparent") if isinstance(trace_context, dict) else None
    parts = header.split("-") if isinstance(header, str) else []
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _pretty(value: Any) -> str | None:
    """JSON for a <pre> block (escaped by the template, like everything stored): on one line when short."""
    if value is None:
        return None
    short = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if len(short) <= PRETTY_ONE_LINE:
        return short
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def run_time(job: Job, now: datetime | None = None) -> timedelta | None:
    """How long the last attempt ran (so far, if it still runs)."""
    if job.started_at is None:
        return None
    end = job.finished_at or (now or timezone.now() if job.status == "running" else None)
    return None if end is None else end - job.started_at


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "job",
        "status_badge",
        "queue",
        "priority",
        "attempts",
        "enqueued",
        "finished",
        "run_time_display",
    )  # when it started is on the job's page (and is finished minus run time): the list fits 1280 px
    list_display_links = ("job",)
    list_filter = (StatusFilter, QueueFilter, NameFilter, GroupFilter)
    search_fields = ("id", "name")  # shows the search box; get_search_results does the work
    search_help_text = "A job id (exact), or part of a job name."
    ordering = ("-id",)
    sortable_by = ("enqueued",)
    list_per_page = LIST_PER_PAGE
    list_max_show_all = 200
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # "delete_selected" replaces Django's action of that name, whose confirmation page lists every object.
    actions = ("retry_selected", "cancel_selected", "requeue_selected", "delete_selected")
    detail_template = "admin/djtasks/job/detail.html"

    # -- list columns -------------------------------------------------------------------------------------
    @admin.display(description="job")
    def job(self, job: Job) -> str:
        """The function's name, its module under it in small type (free to wrap after a dot, so the list fits
        a laptop screen); the full name and the id on hover."""
        module, _, function = job.name.rpartition(".")
        parts = format_html_join(mark_safe(".<wbr>"), "{}", ((part,) for part in module.split("."))) if module else ""
        return format_html(
            '<span title="{} {}">{}<span class="djtasks-module">{}</span></span>', job.name, job.id, function, parts
        )

    @admin.display(description="status")
    def status_badge(self, job: Job) -> str:
        status = shown_status(job.status, job.started_at)
        label = status.value
        if job.status == "queued" and job.run_at > timezone.now():
            label = "scheduled"
        elif job.status == "running" and job.cancel_requested:
            label = "cancelling"
        elif job.status == "running" and status != job.status:
            label = "claimed"  # by a worker, ahead: it waits for a free thread there
        return format_html('<span class="djtasks-status djtasks-{}">{}</span>', status.value, label)

    @admin.display(description="attempts")
    def attempts(self, job: Job) -> str:
        return f"{job.attempt}/{job.max_attempts}"

    @admin.display(description="enqueued", ordering="id")  # ids are UUIDv7: id order is enqueue order
    def enqueued(self, job: Job) -> str:
        return _time(job.enqueued_at)

    @admin.display(description="started")
    def started(self, job: Job) -> str:
        return _time(job.started_at)

    @admin.display(description="finished")
    def finished(self, job: Job) -> str:
        return _time(job.finished_at)

    @admin.display(description="run time")
    def run_time_display(self, job: Job) -> str:
        """How long it ran; for a running job, how long so far and, under it, its progress (in this column
        rather than one of its own, so the list fits 1280 px)."""
        elapsed = run_time(job)
        text = "—" if elapsed is None else format_duration(elapsed.total_seconds())
        if job.status != "running":
            return text
        if elapsed is not None:
            text += " …"
        if job.progress is None:
            return text
        return format_html('{}<span class="djtasks-module">{}</span>', text, progress_text(job.progress))

    # -- read-only ------------------------------------------------------------------------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        if obj is not None and obj.status == "running":
            return False  # cancel it first: its worker would otherwise finish a row that is gone
        return super().has_delete_permission(request, obj)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("djtasks.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("djtasks.cancel_job")

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("djtasks.requeue_job")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The workers page links to a worker's jobs (the group has its own filter).
        return lookup == "worker_id" or super().lookup_allowed(lookup, value, request)  # type: ignore[arg-type]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """A UUID finds that job through the primary key; any other text matches part of the name."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(name__icontains=term), False

    # -- actions ----------------------------------------------------------------------------------------------
    def _run(
        self, request: HttpRequest, queryset: QuerySet[Job], operation: Callable[[list[uuid.UUID]], Iterable[Any]]
    ) -> tuple[int, list[Any]]:
        """Apply ``operation`` to the selected ids in batches; returns (selected, what it reported)."""
        ids = list(queryset.order_by().values_list("id", flat=True))
        done: list[Any] = []
        for start in range(0, len(ids), BATCH_SIZE):
            done.extend(operation(ids[start : start + BATCH_SIZE]))
        return len(ids), done

    def _back(self, request: HttpRequest, job_id: Any = None) -> HttpResponseRedirect | None:
        """After a button on the detail page, return to that page (or to ``job_id``'s)."""
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if request.POST.get(FROM_DETAIL) and len(selected) == 1:
            return HttpResponseRedirect(reverse("admin:djtasks_job_change", args=[job_id or selected[0]]))
        return None

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        selected, retried = self._run(request, queryset, retry_jobs)
        self.message_user(request, f"Retried {len(retried)} job(s): queued again.", messages.SUCCESS)
        if selected > len(retried):
            self.message_user(
                request,
                f"{selected - len(retried)} job(s) left alone: only failed or cancelled jobs can be retried "
                "(and not while another active job holds their unique key).",
                messages.WARNING,
            )
        return self._back(request)

    @admin.action(description="Cancel selected queued or running jobs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        def cancel(ids: list[uuid.UUID]) -> Iterable[str]:
            return cancel_jobs(ids).values()

        selected, statuses = self._run(request, queryset, cancel)
        cancelled = statuses.count("cancelled")
        requested = statuses.count("running")
        self.message_user(
            request,
            f"Cancelled {cancelled} queued job(s); asked the workers of {requested} running job(s) to stop them.",
            messages.SUCCESS,
        )
        if selected > len(statuses):
            self.message_user(
                request,
                f"{selected - len(statuses)} job(s) had already finished and were left alone.",
                messages.WARNING,
            )
        return self._back(request)

    @admin.action(description="Requeue copies of selected finished jobs", permissions=["requeue"])
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        def requeue(ids: list[uuid.UUID]) -> Iterable[uuid.UUID]:
            return requeue_jobs(ids).values()

        selected, copies = self._run(request, queryset, requeue)
        self.message_user(request, f"Queued {len(copies)} new job(s) copied from the selected ones.", messages.SUCCESS)
        if selected > len(copies):
            self.message_user(
                request,
                f"{selected - len(copies)} job(s) not copied: only finished jobs are requeued "
                "(and not while another active job holds their unique key).",
                messages.WARNING,
            )
        return self._back(request, copies[0] if len(copies) == 1 else None)

    @admin.action(description="Delete selected jobs", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        """Like Django's delete action, but the confirmation page shows a count, not every row."""
        if request.POST.get("post") == "yes":
            selected, deleted = self._run(request, queryset, delete_jobs)
            self.message_user(request, f"Deleted {len(deleted)} job(s).", messages.SUCCESS)
            if selected > len(deleted):
                self.message_user(
                    request,
                    f"{selected - len(deleted)} running job(s) not deleted: cancel them first.",
                    messages.WARNING,
                )
            return None
        select_across = request.POST.get("select_across") == "1"
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete jobs?",
            "opts": self.opts,
            "count": queryset.count(),
            "running": queryset.filter(status="running").count(),
            "sample": list(queryset[:DELETE_SAMPLE]),
            "select_across": select_across,
            "selected": [] if select_across else request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/djtasks/job/delete_selected_confirmation.html", context)

    # -- the detail page ------------------------------------------------------------------------------------
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A page made for reading a job: arguments, result, every attempt's error and traceback, links."""
        job = self.get_object(request, unquote(object_id))
        if job is None:
            # Django's own "no such object" answer (a private helper the type stubs do not list).
            response: HttpResponse = self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
            return response
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        worker = Worker.objects.filter(id=job.worker_id).first() if job.worker_id else None
        elapsed = run_time(job)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Job {job.name}",
            "subtitle": str(job.id),
            "opts": self.opts,
            "original": job,
            "job": job,
            "status_badge": self.status_badge(job),
            "run_time": format_duration(elapsed.total_seconds()) if elapsed else "—",
            "worker": worker,
            "args_json": _pretty(job.args),
            "kwargs_json": _pretty(job.kwargs),
            "result_json": _pretty(job.result),
            "progress_json": _pretty(job.progress),
            "on_failure_json": _pretty(job.on_failure),
            "trace_id": _trace_id(job.trace_context),
            "errors": list(reversed(job.errors or [])),
            "can_retry": job.status in ("failed", "cancelled") and self.has_retry_permission(request),
            "can_cancel": job.status in ("waiting", "queued", "running") and self.has_cancel_permission(request),
            "workflow": workflow(job),
            "can_requeue": job.status in ("succeeded", "failed", "cancelled") and self.has_requeue_permission(request),
            "can_delete": self.has_delete_permission(request, job),
            "from_detail": FROM_DETAIL,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.detail_template, context)
