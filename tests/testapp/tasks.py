"""Jobs used by the tests (autodiscovered like any app's tasks.py)."""

from __future__ import annotations

import os
import time

from djtasks import job, periodic

from .models import Execution


@job
def add(a, b):
    return a + b


@job
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@job(bind=True)
def record(ctx, label, sleep=0.0):
    """Record that it ran (one row per execution), then optionally sleep."""
    Execution.objects.create(job_id=ctx.job_id, label=label, attempt=ctx.attempt, pid=os.getpid())
    if sleep:
        time.sleep(sleep)
    return label


@job
def boom(message="boom"):
    raise ValueError(message)


@job(max_attempts=3, retry_backoff=1, bind=True)
def flaky(ctx, succeed_on):
    Execution.objects.create(job_id=ctx.job_id, label="flaky", attempt=ctx.attempt, pid=os.getpid())
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@job(max_attempts=3, retry_on=(KeyError,))
def only_keyerror_retries(kind):
    raise {"key": KeyError, "value": ValueError}[kind]("nope")


@job(bind=True, max_attempts=2)
def asks_retry(ctx):
    if ctx.attempt == 1:
        ctx.retry(countdown=0)
    return ctx.attempt


@job
def returns_set():
    return {1, 2}


@job(queue="other", priority=5)
def on_other():
    return "other"


@job
def exits():
    raise SystemExit(3)


@job
def tick(label="tick"):
    """Target of periodic schedules in the tests: its row's run_at is the tick it was enqueued for."""
    return label


# A code-defined schedule, synced to a row whenever a scheduler starts (far from firing during a test run).
periodic(tick, cron="0 4 29 2 *", tz="Europe/Paris", name="testapp-rare", kwargs={"label": "rare"})
