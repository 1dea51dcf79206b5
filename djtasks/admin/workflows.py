"""The workflow parts of the jobs admin: the group filter, a running job's progress in the list, and what a
job's page shows of its workflow (parent, next steps, group and chord state). Each is a few indexed reads:
by primary key, or by ``group_id`` through the partial group index."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import Group, Job

FAILED_MEMBERS_SHOWN = 20  # failed members linked on a job's page; the count covers all of them


class GroupFilter(admin.SimpleListFilter):
    """The members of one group (``?group_id=``; the detail page links here). No choices are listed: there
    may be millions of groups, so only the selected one is shown, with "All" to clear it."""

    title = "group"
    parameter_name = "group_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = request.GET.get(self.parameter_name)
        return [(value, f"group {value[:8]}…")] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(group_id=uuid.UUID(value))
        except ValueError:
            return queryset.none()


def progress_text(value: Any) -> str:
    """A running job's progress in a few characters: ``40/100 (40%)`` for ``{"done", "total"}``, else JSON."""
    if isinstance(value, dict) and isinstance(value.get("done"), (int, float)) and value.get("total"):
        done, total = value["done"], value["total"]
        if isinstance(total, (int, float)):
            return f"{done:g}/{total:g} ({100 * done / total:.0f}%)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def workflow(job: Job) -> dict[str, Any] | None:
    """What the detail page shows of a job's workflow: its parent (a job or a group), the steps waiting on it,
    and its group's state (succeeded / total, failed members, what waits for the group). ``None`` outside one."""
    if job.parent_id is None and job.group_id is None and not job.on_success:
        return None
    ids = _linked_ids(job.on_success)
    parent_group = Group.objects.filter(id=job.parent_id).first() if job.parent_id else None
    parent_job = Job.objects.filter(id=job.parent_id).only("id", "name", "status").first() if job.parent_id else None
    group = Group.objects.filter(id=job.group_id).first() if job.group_id else None
    info: dict[str, Any] = {
        "parent_job": parent_job,
        "parent_group": _group_state(parent_group) if parent_group else None,
        "next": list(Job.objects.filter(id__in=ids).only("id", "name", "status")),
        "group": _group_state(group) if group else None,
        "group_id": job.group_id,
    }
    return info


def _group_state(group: Group) -> dict[str, Any]:
    failed = Job.objects.filter(group_id=group.id, status__in=["failed", "cancelled"]).only("id", "name", "status")
    waiting_ids = _linked_ids(group.on_success)
    return {
        "group": group,
        "succeeded": group.total - group.remaining,
        "failed": list(failed[:FAILED_MEMBERS_SHOWN]),
        "failed_count": failed.count(),
        "callbacks": list(Job.objects.filter(id__in=waiting_ids).only("id", "name", "status")),
    }


def _linked_ids(links: Any) -> list[uuid.UUID]:
    """The job ids an ``on_success`` list points to (``[{"id": ..., "pass": ...}]``); anything else is ignored."""
    found = []
    for link in links if isinstance(links, list) else []:
        try:
            found.append(uuid.UUID(str(link["id"])))
        except (KeyError, TypeError, ValueError):
            continue
    return found
