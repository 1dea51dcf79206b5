"""Helpers for the admin tests: job rows in any state without running a worker, and users with chosen rights."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Permission, User
from django.utils import timezone

from djtasks.ids import uuid7
from djtasks.models import Job

ERROR = {
    "type": "builtins.ValueError",
    "message": "boom",
    "traceback": 'Traceback (most recent call last):\n  File "tasks.py", line 3, in boom\nValueError: boom\n',
    "attempt": 1,
    "at": "2026-01-01T00:00:00+00:00",
}


def make_job(status: str = "queued", **fields: Any) -> Job:
    """A job row as a worker would have left it in ``status``."""
    now = timezone.now()
    values: dict[str, Any] = {
        "id": uuid7(),
        "name": "tests.testapp.tasks.add",
        "queue": "default",
        "status": status,
        "args": [1, 2],
        "kwargs": {},
        "run_at": now,
        "enqueued_at": now,
        "attempt": 0 if status in ("queued", "cancelled") else 1,
        "max_attempts": 1,
        "errors": [],
    }
    if status in ("running", "succeeded", "failed"):
        values["started_at"] = now - timedelta(seconds=2)
    if status in ("succeeded", "failed", "cancelled"):
        values["finished_at"] = now
    if status == "succeeded":
        values["result"] = 3
    if status == "failed":
        values["errors"] = [ERROR]
    values.update(fields)
    return Job.objects.create(**values)


def staff_user(username: str, *codenames: str) -> User:
    """A staff user (not a superuser) holding exactly these djtasks permissions."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="djtasks", codename__in=codenames)
    assert perms.count() == len(codenames), f"missing permissions among {codenames}"
    user.user_permissions.add(*perms)
    return user


def action(client: Any, name: str, *jobs: Job, **extra: Any) -> Any:
    """Post a changelist action for ``jobs``, following the redirect."""
    data = {"action": name, "index": 0, "_selected_action": [str(j.id) for j in jobs], **extra}
    return client.post("/admin/djtasks/job/", data, follow=True)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []
