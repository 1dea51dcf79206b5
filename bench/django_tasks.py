"""The ``django.tasks`` side of ``bench/tasks_backend.py``: a no-op ``@task`` on djtasks' backend (Django 6+).
Not a ``tasks.py``: the worker imports it on demand, as it would a task module of any installed app."""

from django.tasks import task


@task
def noop_task() -> None:
    """Does nothing: what is measured is the queue, not the task."""
