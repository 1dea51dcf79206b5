"""The django-tasks-db side's job: a no-op ``@task``."""

from __future__ import annotations

try:
    from django.tasks import task  # Django 6+
except ImportError:
    from django_tasks import task  # the backport, on Django 5.2


@task()
def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""
