"""``django.tasks`` tasks (Django 6+) run by djtasks' backend. Not a ``tasks.py``: the worker imports this
module on demand, the first time it meets one of these tasks (an installed app's module)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import django
from django.tasks import task

from .models import Execution

# Django 6.1 passes extra @task keywords to the backend's task class; Django 6.0 takes djtasks' own decorator.
if django.VERSION >= (6, 1):
    djtasks_task = task
else:
    from djtasks.backend import task as djtasks_task


@task
def noop():
    return None


@task
def add(a, b):
    return a + b


@task(priority=7, queue_name="other")
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task
def failing(message="boom"):
    raise ValueError(message)


@task
def returns_datetime():
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@task
def returns_tuple():
    return (1, (2, 3))


@task(takes_context=True)
def context_info(context, label=""):
    result = context.task_result
    return {
        "attempt": context.attempt,
        "id": result.id,
        "status": result.status,
        "worker_ids": result.worker_ids,
        "errors": len(result.errors),
        "label": label,
    }


@djtasks_task(takes_context=True, max_attempts=3)
def flaky(context, succeed_on):
    Execution.objects.create(label="flaky-task", attempt=context.attempt, pid=os.getpid())
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


@djtasks_task(time_limit=30, soft_time_limit=10, retry_backoff=2)
def limited():
    return "ok"


@djtasks_task(takes_context=True, max_attempts=2)
def record(context, label, sleep_first=0.0):
    """One Execution row per run; only the first attempt is slow (a re-run after a kill ends quickly)."""
    Execution.objects.create(label=label, attempt=context.attempt, pid=os.getpid())
    if context.attempt == 1 and sleep_first:
        time.sleep(sleep_first)
    return context.attempt


@task(takes_context=True)
async def arecord(context, label, sleep=0.0):
    """The async ORM inside an async task."""
    await Execution.objects.acreate(label=label, attempt=context.attempt, pid=os.getpid())
    if sleep:
        await asyncio.sleep(sleep)
    return await Execution.objects.filter(label=label).acount()


@task
async def aadd(a, b):
    await asyncio.sleep(0)
    return a + b
