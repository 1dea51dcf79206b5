"""The queue dashboard: an admin page with per-queue counts, the last hour as small charts, and the workers.

It sits in the admin's app list as "Queue dashboard" through the ``QueueDashboard`` proxy model, whose admin
has no pages but this one. The numbers come from ``djtasks.dashboard.summary`` (the same as ``manage.py djtasks
status``); the charts are inline SVG drawn here; the page refreshes its body every few seconds with a few lines
of plain JavaScript (and works, unrefreshed, without it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..dashboard import Bucket, QueueSummary, format_duration, format_rate, summary
from ..models import QueueDashboard

REFRESH_S = 5  # default auto-refresh period; ?refresh=N (1..300) overrides it
CHART_HEIGHT = 36
BAR_WIDTH = 4
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
    }


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
        return [path("", self.admin_site.admin_view(self.dashboard_view), name="{}_{}_changelist".format(*info))]

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
