"""The demo's jobs. Every installed app's tasks.py is imported by djtasks at startup."""

from __future__ import annotations

import time

from django.utils import timezone

from djtasks import job, periodic


@job
def add(a: int, b: int, seconds: float = 0.0) -> int:
    """Add two numbers, after pretending to work for ``seconds``."""
    time.sleep(seconds)
    return a + b


@job(queue="slow", max_attempts=3, retry_backoff=2, bind=True)
def flaky_add(ctx, a: int, b: int) -> int:
    """Fails on its first two attempts, then succeeds: watch the retries with backoff."""
    if ctx.attempt < 3:
        raise RuntimeError(f"flaky: attempt {ctx.attempt} fails on purpose")
    return a + b


@job
def fail(message: str) -> None:
    """Always fails, to show a stored error and traceback."""
    raise ValueError(message)


@job(bind=True)
def fail_once(ctx, a: int, b: int) -> int:
    """Fails on its first attempt and has no automatic retry: retry it from the admin and it succeeds."""
    if ctx.attempt == 1:
        raise RuntimeError("fail_once: the first attempt fails on purpose; retry me from the admin")
    return a + b


@periodic(every=30, name="demo-heartbeat")
@job
def heartbeat() -> str:
    """Fired every 30 s by the scheduler that ``manage.py demo`` runs inside its worker (``--beat``)."""
    return f"beat at {timezone.now().isoformat(timespec='seconds')}"


@job(bind=True)
def square(ctx, n: int, seconds: float = 2.0) -> int:
    """A chord header job: works for ``seconds`` in ten steps, reporting progress, then returns n*n."""
    for step in range(10):
        ctx.set_progress({"done": step, "total": 10})
        time.sleep(seconds / 10)
    ctx.set_progress({"done": 10, "total": 10})
    return n * n


@job
def summarize(squares: list[int]) -> dict:
    """The chord callback: runs once, after every square() succeeded, with their results in order."""
    return {"squares": squares, "sum": sum(squares)}
