"""Admin for periodic schedules: list with next and last fire, edit with validation, enable/disable/run now.

A save recomputes ``next_fire_at`` when the timing changed (or the schedule was switched on) and ``NOTIFY``s
the schedulers, so a running ``runbeat`` applies the edit at once, without a restart. Only the edited fields are
written: a scheduler moving ``next_fire_at`` on at the same moment is never overwritten with a stale tick.
Schedules defined in code or settings can be switched on and off here, but their definition is the code's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..conf import PRIORITY_MAX, PRIORITY_MIN, djtasks_settings
from ..cron import first_fire, validate_cron, zone
from ..cursors import django_store
from ..exceptions import NotRegistered
from ..maintenance.scheduler import Scheduler, row_of, timing_of
from ..models import Job, Schedule
from ..registry import registry

TIMING_FIELDS = ("cron", "interval_seconds", "at", "timezone")
DEFINITION_FIELDS = (
    "job_name",
    *TIMING_FIELDS,
    "args",
    "kwargs",
    "queue",
    "priority",
    "catch_up",
    "expires_seconds",
    "unique",
)
STATUS_FIELDS = ("source", "next_fire_at", "last_fire_at", "last_job_id", "last_status")


def _local(value: datetime | None, tz_name: str) -> str:
    if value is None:
        return "—"
    try:
        tz = ZoneInfo(tz_name)
    except (ValueError, KeyError):
        tz = ZoneInfo("UTC")
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _next_fire(obj: Schedule, now: datetime, *, retimed: bool) -> datetime | None:
    """``next_fire_at`` for a schedule that was re-timed, created or switched back on: the next tick after
    ``now``; a one-off that already fired and was merely switched back on stays done."""
    if not retimed and obj.at is not None and obj.last_fire_at is not None and obj.last_fire_at >= obj.at:
        return None
    return first_fire(timing_of(row_of(obj)), now)


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ("name", *DEFINITION_FIELDS, "enabled")

    def clean_cron(self) -> str:
        value = (self.cleaned_data.get("cron") or "").strip()
        if not value:
            return ""
        try:
            return validate_cron(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_timezone(self) -> str:
        value = self.cleaned_data.get("timezone") or ""
        try:
            return zone(value.strip()).key
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_job_name(self) -> str:
        value = (self.cleaned_data.get("job_name") or "").strip()
        if value not in registry:
            close = registry.similar(value)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise forms.ValidationError(f"No job named {value!r} is registered.{hint}")
        return value

    def clean_queue(self) -> str:
        value = (self.cleaned_data.get("queue") or "").strip()
        if value and value not in djtasks_settings.QUEUES:
            raise forms.ValidationError(f"Unknown queue {value!r}; known: {', '.join(djtasks_settings.QUEUES)}.")
        return value

    def clean_priority(self) -> int | None:
        value = self.cleaned_data.get("priority")
        if value is not None and not PRIORITY_MIN <= value <= PRIORITY_MAX:
            raise forms.ValidationError(f"Priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}.")
        return value

    def clean_args(self) -> Any:
        value = self.cleaned_data.get("args")
        if value is None:
            return []
        if not isinstance(value, list):
            raise forms.ValidationError('Positional arguments must be a JSON list, e.g. [1, "a"].')
        return value

    def clean_kwargs(self) -> Any:
        value = self.cleaned_data.get("kwargs")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Keyword arguments must be a JSON object, e.g. {"report_id": 7}.')
        return value

    def clean_expires_seconds(self) -> float | None:
        value = self.cleaned_data.get("expires_seconds")
        if value is not None and value <= 0:
            raise forms.ValidationError("Expires must be a positive number of seconds (or blank: never).")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.instance.pk and self.instance.orphaned and data.get("enabled"):
            raise forms.ValidationError(
                f"This schedule is no longer defined in {self.instance.source}; define it there again to enable it."
            )
        if any(name in self.errors for name in TIMING_FIELDS) or "cron" not in data:
            return data  # read-only definition, or a field error already explains it
        given = [f for f in ("cron", "interval_seconds", "at") if data.get(f) not in (None, "")]
        if len(given) != 1:
            raise forms.ValidationError("Give exactly one of: a cron expression, an interval in seconds, or a time.")
        try:
            timing_of({**{f: data.get(f) for f in TIMING_FIELDS}, "cron": data.get("cron") or ""})
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    # Five columns, each stacking related facts, so the list fits a 1280 px screen beside the admin's sidebars.
    list_display = ("schedule", "timing", "next_fire", "state", "last_fire")
    list_display_links = ("schedule",)
    list_filter = ("enabled", "source", "catch_up")
    search_fields = ("name", "job_name")
    ordering = ("name",)
    actions = ("enable_schedules", "disable_schedules", "run_now")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        status = Job.objects.filter(id=OuterRef("last_job_id")).values("status")[:1]
        rows: QuerySet[Schedule] = super().get_queryset(request).annotate(last_job_status=Subquery(status))
        return rows

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> tuple[str, ...]:
        if obj is not None and obj.source != "admin":
            return ("name", *DEFINITION_FIELDS, *STATUS_FIELDS)  # the definition belongs to the code or settings
        return STATUS_FIELDS if obj is not None else ()

    # -- columns ------------------------------------------------------------------------------------------
    @admin.display(description="schedule", ordering="name")
    def schedule(self, obj: Schedule) -> str:
        """Its name, and the job it enqueues under it in small type (free to wrap after a dot)."""
        module, _, function = obj.job_name.rpartition(".")
        parts = [*module.split("."), function] if module else [function]
        job = format_html_join(mark_safe(".<wbr>"), "{}", ((part,) for part in parts))
        return format_html('{}<span class="djtasks-module" title="{}">{}</span>', obj.name, obj.job_name, job)

    @admin.display(description="timing")
    def timing(self, obj: Schedule) -> str:
        if obj.cron:
            return f"{obj.cron} ({obj.timezone})"
        if obj.interval_seconds is not None:
            return f"every {obj.interval_seconds:g} s"
        return f"once at {_local(obj.at, obj.timezone)}"

    @admin.display(description="next fire (its zone)", ordering="next_fire_at")
    def next_fire(self, obj: Schedule) -> str:
        if not obj.enabled:
            return "disabled"
        return _local(obj.next_fire_at, obj.timezone)

    @admin.display(description="enabled", ordering="enabled")
    def state(self, obj: Schedule) -> str:
        """On or off, and where it is defined (``code``, ``settings``, ``admin``)."""
        icon = "yes" if obj.enabled else "no"
        return format_html(
            '<img src="{}" alt="{}"><span class="djtasks-module">{}</span>',
            static(f"admin/img/icon-{icon}.svg"),
            "enabled" if obj.enabled else "disabled",
            obj.source,
        )

    @admin.display(description="last fire", ordering="last_fire_at")
    def last_fire(self, obj: Schedule) -> str:
        """When it last fired, its job's status (a link to the job) and what the scheduler said."""
        when = _local(obj.last_fire_at, obj.timezone)
        if obj.last_job_id is None:
            return format_html('{}<span class="djtasks-module">{}</span>', when, obj.last_status)
        return format_html('{} · {}<span class="djtasks-module">{}</span>', when, self.last_job(obj), obj.last_status)

    def last_job(self, obj: Schedule) -> str:
        if obj.last_job_id is None:
            return "—"
        status = getattr(obj, "last_job_status", None) or "pruned"
        try:
            url = reverse("admin:djtasks_job_change", args=[obj.last_job_id])
        except NoReverseMatch:  # the jobs admin is not installed
            return status
        return format_html('<a href="{}">{}</a>', url, status)

    # -- saving -------------------------------------------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.ModelForm, change: bool) -> None:
        original = Schedule.objects.filter(pk=obj.pk).first() if change else None
        if original is None:
            obj.next_fire_at = _next_fire(obj, timezone.now(), retimed=True)
            obj.source = "admin"
            obj.save()
        else:
            # Compare with the row as it is now, and write only what the operator changed.
            fields = [f for f in form.base_fields if getattr(obj, f) != getattr(original, f)]
            retimed = any(f in TIMING_FIELDS for f in fields)
            if retimed or (obj.enabled and not original.enabled):
                obj.next_fire_at = _next_fire(obj, timezone.now(), retimed=retimed)
                fields.append("next_fire_at")
            obj.save(update_fields=fields)
        # Delivered when the admin's transaction commits: running schedulers re-read at once.
        django_store().schedule_notify(name=obj.name)

    # -- actions ------------------------------------------------------------------------------------------
    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        now, enabled = timezone.now(), 0
        for obj in queryset.filter(enabled=False):
            if obj.orphaned:
                self.message_user(
                    request, f"{obj.name}: no longer defined in {obj.source}; left disabled.", messages.WARNING
                )
                continue
            obj.enabled = True
            obj.next_fire_at = _next_fire(obj, now, retimed=False)
            obj.save(update_fields=["enabled", "next_fire_at"])
            django_store().schedule_notify(name=obj.name)
            enabled += 1
        self.message_user(request, f"Enabled {enabled} schedule(s).", messages.SUCCESS)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = queryset.filter(enabled=True).update(enabled=False)
        django_store().schedule_notify(name="*")
        self.message_user(request, f"Disabled {count} schedule(s).", messages.SUCCESS)

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        scheduler, now = Scheduler.for_django(), timezone.now()
        for obj in queryset:
            try:
                outcome = scheduler.run_now(row_of(obj), now)
            except (NotRegistered, ValueError) as exc:
                self.message_user(request, f"{obj.name}: {exc}", messages.ERROR)
                continue
            level = messages.SUCCESS if outcome.job_ids else messages.WARNING
            self.message_user(request, f"{obj.name}: {outcome.status}", level)
