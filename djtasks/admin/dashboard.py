"""The queue dashboard: an admin page with per-queue counts, the last hour as small charts, and the workers.

It sits in the admin's app list as "Queue dashboard" through the ``QueueDashboard`` proxy model, whose admin
has no pages but this one. The numbers come from ``djtasks.dashboard.summary`` (the same as ``manage.py djtasks
status``); the charts are inline SVG drawn here; the page refreshes its body every few seconds with a few lines
of plain JavaScript (and works, unrefreshed, without it).

Each queue row shows its limits and how full they are; users with ``djtasks.pause_queue`` get pause/resume
buttons, and users with ``djtasks.change_queue`` a form for the limits (``<queue>/limits/``), whose errors
name the queue and the value. Both go through ``djtasks.queues``: a change overrides ``DJTASKS['QUEUES']``
until reset and reaches the workers at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..dashboard import Bucket, QueueSummary, format_duration, format_rate, summary
from ..models import QueueDashboard
from ..queues import QueueOptionError, clean_concurrency, clean_rate_limit, queue_state, set_queue_options

REFRESH_S = 5  # default auto-refresh period; ?refresh=N (1..300) overrides it
CHART_HEIGHT = 36
BAR_WIDTH = 2  # a queue's sparkline: 60 minutes in 120 px, so the table fits a 1280 px screen
BIG_CHART_HEIGHT = 80  # the all-queues chart at the top
BIG_BAR_WIDTH = 10


def _n(value: float) -> str:
    return f"{value:.1f}"


def chart_svg(buckets: list[Bucket], *, height: int = CHART_HEIGHT, bar_width: int = BAR_WIDTH) -> SafeString:
    """Stacked bars, one per bucket: succeeded (green) under failed and cancelled (red); a tooltip on each.

    Only numbers and formatted times go into the markup, and those through ``format_html``.
    """
    width = bar_width * len(buckets)
    peak = max((b.finished for b in buckets), default=0) or 1
    scale = (height - 1) / peak
    bars = []
    for index, bucket in enumerate(buckets):
        ok_h = bucket.succeeded * scale
        bad_h = (bucket.failed + bucket.cancelled) * scale
        label = f"{timezone.localtime(bucket.start):%H:%M}: {bucket.succeeded} succeeded, {bucket.failed} failed"
        if bucket.cancelled:
            label += f", {bucket.cancelled} cancelled"
        x = index * bar_width
        top = height - 1 - ok_h - bad_h
        bars.append(
            (
                label,
                x,
                bar_width,
                height,
                x,
                _n(top),
                bar_width - 1,
                _n(bad_h),
                x,
                _n(top + bad_h),
                bar_width - 1,
                _n(ok_h),
            )
        )
    body = format_html_join(
        "",
        '<g><title>{}</title><rect x="{}" y="0" width="{}" height="{}" fill="transparent"/>'
        '<rect x="{}" y="{}" width="{}" height="{}" class="djtasks-bar-failed"/>'
        '<rect x="{}" y="{}" width="{}" height="{}" class="djtasks-bar-succeeded"/></g>',
        bars,
    )
    return format_html(
        '<svg class="djtasks-chart" role="img" aria-label="jobs finished per minute, last hour" width="{}" height="{}"'
        ' viewBox="0 0 {} {}"><line x1="0" y1="{}" x2="{}" y2="{}" class="djtasks-axis"/>{}</svg>',
        width,
        height,
        width,
        height,
        _n(height - 0.5),
        width,
        _n(height - 0.5),
        body,
    )


def _jobs_url(**params: Any) -> str:
    return reverse("admin:djtasks_job_changelist") + "?" + urlencode({k: v for k, v in params.items() if v})


def _row(q: QueueSummary, *, queue: str | None) -> dict[str, Any]:
    return {
        "q": q,
        "queued_url": _jobs_url(status="due", queue=queue),
        "scheduled_url": _jobs_url(status="scheduled", queue=queue),
        "waiting_url": _jobs_url(status="waiting", queue=queue),
        "running_url": _jobs_url(status="running", queue=queue),
        "claimed_url": _jobs_url(status="claimed", queue=queue),
        "failed_url": _jobs_url(status="failed", queue=queue),
        "succeeded_url": _jobs_url(status="succeeded", queue=queue),
        "oldest_wait": format_duration(q.oldest_wait_s),
        "failure_rate": format_rate(q.failure_rate),
        "throughput": f"{q.throughput_per_min:.1f}",
        "chart": chart_svg(q.buckets),
        "fullness": "" if q.fullness is None else f"{q.holding} of {q.concurrency}",
    }


class QueueLimitsForm(forms.Form):
    """A queue's run-time options; a blank limit means none. ``reset`` hands them all back to the settings."""

    concurrency = forms.CharField(
        required=False, help_text="at most this many running at once across all workers; blank: no limit"
    )
    rate_limit = forms.CharField(required=False, help_text="e.g. 100/m, 10/s, 500/h; blank: no limit")
    paused = forms.BooleanField(required=False, help_text="nothing of this queue starts; running jobs finish")
    reset = forms.BooleanField(required=False, label="Reset to settings", help_text="use DJTASKS['QUEUES'] again")

    def __init__(self, *args: Any, queue: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = queue

    def clean_concurrency(self) -> int | None:
        try:
            return clean_concurrency(self.queue, self.cleaned_data["concurrency"])
        except QueueOptionError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_rate_limit(self) -> str:
        try:
            rate = clean_rate_limit(self.queue, self.cleaned_data["rate_limit"])
        except QueueOptionError as exc:
            raise forms.ValidationError(str(exc)) from None
        return rate.text if rate else ""


@admin.register(QueueDashboard)
class QueueDashboardAdmin(admin.ModelAdmin):
    """Only the dashboard page, shown to whoever may view jobs."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("djtasks.view_job") or request.user.has_perm("djtasks.change_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        info = (self.opts.app_label, self.opts.model_name)
        prefix = "{}_{}".format(*info)
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard_view), name=f"{prefix}_changelist"),
            path("<str:queue>/limits/", view(self.limits_view), name=f"{prefix}_limits"),
            path("<str:queue>/pause/", view(self.pause_view), {"paused": True}, name=f"{prefix}_pause"),
            path("<str:queue>/resume/", view(self.pause_view), {"paused": False}, name=f"{prefix}_resume"),
        ]

    def _dashboard_url(self) -> str:
        return reverse(f"{self.admin_site.name}:djtasks_queuedashboard_changelist")

    def pause_view(self, request: HttpRequest, queue: str, paused: bool) -> HttpResponse:
        """POST only: pause or resume ``queue`` (permission ``djtasks.pause_queue``)."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if not request.user.has_perm("djtasks.pause_queue"):
            raise PermissionDenied
        try:
            set_queue_options(queue, paused=paused)
        except QueueOptionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Queue {queue} {'paused' if paused else 'resumed'}.")
        return HttpResponseRedirect(self._dashboard_url())

    def limits_view(self, request: HttpRequest, queue: str) -> HttpResponse:
        """A form for ``queue``'s limits and paused flag (permission ``djtasks.change_queue``)."""
        if not request.user.has_perm("djtasks.change_queue"):
            raise PermissionDenied
        try:
            state = queue_state(queue)
        except QueueOptionError:
            raise Http404(f"unknown queue {queue!r}") from None
        initial = {
            "concurrency": "" if state.concurrency is None else str(state.concurrency),
            "rate_limit": state.rate_text,
            "paused": state.paused,
        }
        form = QueueLimitsForm(request.POST or None, queue=queue, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if data["reset"]:
                set_queue_options(queue, reset="all")
                messages.success(request, f"Queue {queue} uses DJTASKS['QUEUES'] again.")
            else:
                changed = {
                    name: data[name] for name in ("concurrency", "rate_limit", "paused") if name in form.changed_data
                }
                set_queue_options(queue, **changed)
                messages.success(request, f"Queue {queue} saved.")
            return HttpResponseRedirect(self._dashboard_url())
        context = {
            **self.admin_site.each_context(request),
            "title": f"Limits of queue {queue}",
            "opts": self.opts,
            "queue": queue,
            "state": state,
            "form": form,
            "dashboard_url": self._dashboard_url(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/djtasks/queue_limits.html", context)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            refresh = min(max(int(request.GET.get("refresh", REFRESH_S)), 1), 300)
        except ValueError:
            refresh = REFRESH_S
        data = summary()
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue dashboard",
            "opts": self.opts,
            "summary": data,
            "rows": [_row(q, queue=q.name) for q in data.queues],
            "total": _row(data.total, queue=None),
            "total_chart": chart_svg(data.total.buckets, height=BIG_CHART_HEIGHT, bar_width=BIG_BAR_WIDTH),
            "total_chart_width": BIG_BAR_WIDTH * len(data.total.buckets),
            "refresh": refresh,
            "can_pause": request.user.has_perm("djtasks.pause_queue"),
            "can_change": request.user.has_perm("djtasks.change_queue"),
            "workers_url": reverse("admin:djtasks_worker_changelist"),
            "dead_workers_url": reverse("admin:djtasks_worker_changelist") + "?alive=no",
            "jobs_url": reverse("admin:djtasks_job_changelist"),
            "workers": [
                {"w": w, "heartbeat_age": format_duration(max(0.0, (data.now - w.heartbeat_at).total_seconds()))}
                for w in data.workers
            ],
        }
        request.current_app = self.admin_site.name
        partial = request.GET.get("partial") == "1"
        template = "admin/djtasks/dashboard_body.html" if partial else "admin/djtasks/dashboard.html"
        return TemplateResponse(request, template, context)
