"""Jobs used by the tests (autodiscovered like any app's tasks.py)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from djtasks import job, periodic, signals

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


@job(max_attempts=3, retry_on=(KeyError,), retry_delay=0)
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

# -- reliability: cancel, time limits, dying processes, recycling, chaos ---------------------------------------
_hoard: list[bytearray] = []  # memory that hog() never gives back, so the process must be recycled


def _append(path, line):
    # One write() with O_APPEND: lines from concurrent processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@job(bind=True)
def cooperative(ctx, timeout=30.0):
    """Works in small steps until cancelled."""
    Execution.objects.create(job_id=ctx.job_id, label="cooperative", attempt=ctx.attempt, pid=os.getpid())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctx.is_cancelled():
            return "stopped"
        time.sleep(0.05)
    return "timed out"


@job(bind=True, max_attempts=3, retry_delay=0)
def survive(ctx, label, sleep_first=0.0):
    """Records each run; only the first attempt is slow (so a re-run after a kill finishes quickly)."""
    Execution.objects.create(job_id=ctx.job_id, label=label, attempt=ctx.attempt, pid=os.getpid())
    if ctx.attempt == 1 and sleep_first:
        time.sleep(sleep_first)
    return label


@job(bind=True, max_attempts=25)
def chaos_touch(ctx, path, sleep=0.0):
    """Side effect first (a line in a file), then some work: a kill during the work makes a duplicate."""
    _append(path, f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    time.sleep(sleep)
    return ctx.attempt


@job(bind=True)
def touch(ctx, path, sleep=0.0):
    """Work, then the side effect: one line per completed execution (no retries: any failure shows)."""
    time.sleep(sleep)
    _append(path, f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    return ctx.attempt


@job(bind=True, time_limit=1.5)
def overdue(ctx, seconds):
    Execution.objects.create(job_id=ctx.job_id, label="overdue", attempt=ctx.attempt, pid=os.getpid())
    time.sleep(seconds)
    return "finished"


@job(bind=True, soft_time_limit=0.5, time_limit=10)
def soft_limited(ctx):
    """Polls in short sleeps; cleans up when the soft limit strikes."""
    from djtasks import SoftTimeLimitExceeded

    started = time.monotonic()
    try:
        while True:
            time.sleep(0.02)
    except SoftTimeLimitExceeded:
        Execution.objects.create(job_id=ctx.job_id, label="cleaned up", attempt=ctx.attempt, pid=os.getpid())
        return round(time.monotonic() - started, 2)


@job(soft_time_limit=0.3)
def soft_uncaught():
    while True:
        sum(range(100))


@job(bind=True)
def burn(ctx, seconds):
    """Pure-Python CPU work (holds the GIL except at switch intervals)."""
    import sys

    Execution.objects.create(job_id=ctx.job_id, label="burn", attempt=ctx.attempt, pid=os.getpid())
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        for i in range(1000):
            n += i * i
    return sys.getswitchinterval()


@job(bind=True, max_attempts=2)
def segfault(ctx):
    import ctypes

    Execution.objects.create(job_id=ctx.job_id, label="segfault", attempt=ctx.attempt, pid=os.getpid())
    ctypes.string_at(0)


@job(bind=True, max_attempts=2)
def hard_exit(ctx, code=0):
    Execution.objects.create(job_id=ctx.job_id, label="hard_exit", attempt=ctx.attempt, pid=os.getpid())
    os._exit(code)


@job(bind=True)
def hog(ctx, mb):
    Execution.objects.create(job_id=ctx.job_id, label="hog", attempt=ctx.attempt, pid=os.getpid())
    _hoard.append(bytearray(b"\x01") * (mb * 1024 * 1024))
    return mb


# -- retry timing, routing, enqueue by name (issue 18) -------------------------------------------------------
@job(name="reports.build", queue="other")
def build_report(report_id):
    return {"report": report_id}


@job(max_attempts=3, retry_delay=5)
def fixed_delay():
    raise ConnectionError("the dependency is down")


@job(max_attempts=2)
def default_delay():
    raise ConnectionError("the dependency is down")


@job(bind=True, max_attempts=2, retry_delay=7)
def retry_without_countdown(ctx):
    if ctx.attempt == 1:
        ctx.retry()
    return ctx.attempt


def _log_failure(sender, job_id, attempt, error, exception, **kwargs):
    """With DJTASKS_TEST_SIGNAL_LOG set (acceptance tests), note every job_failed: which job, its error type, the
    exception's class and the process that sent it."""
    path = os.environ.get("DJTASKS_TEST_SIGNAL_LOG")
    if path:
        name = getattr(sender, "name", sender)
        _append(path, f"{name} {job_id} {attempt} {error['type']} {type(exception).__name__} {os.getpid()}\n")


signals.job_failed.connect(_log_failure)


# -- async def jobs: run on the worker process's event loop -------------------------------------------------
@job
async def asleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return seconds


@job(bind=True, max_attempts=3, retry_delay=0)
async def arecord(ctx, label, fail_until=0, sleep=0.0):
    """Records each run with the async ORM; fails while ``ctx.attempt <= fail_until``."""
    import asyncio

    await Execution.objects.acreate(job_id=ctx.job_id, label=label, attempt=ctx.attempt, pid=os.getpid())
    if sleep:
        await asyncio.sleep(sleep)
    if ctx.attempt <= fail_until:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return await Execution.objects.filter(job_id=ctx.job_id).acount()


@job(bind=True, soft_time_limit=0.5, time_limit=20)
async def asoft_limited(ctx):
    """Awaits far past its soft limit; records the cancellation it sees, then lets it through."""
    import asyncio

    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await Execution.objects.acreate(job_id=ctx.job_id, label="async cleaned up", attempt=ctx.attempt)
        raise
    return "not cancelled"


@job(bind=True)
async def acooperative(ctx, timeout=30.0):
    """Awaits in small steps until cancelled."""
    import asyncio

    await Execution.objects.acreate(job_id=ctx.job_id, label="acooperative", attempt=ctx.attempt, pid=os.getpid())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await ctx.ais_cancelled():
            return "stopped"
        await asyncio.sleep(0.05)
    return "timed out"


@job(bind=True, time_limit=1.5)
async def aoverdue(ctx, seconds):
    import asyncio

    await Execution.objects.acreate(job_id=ctx.job_id, label="aoverdue", attempt=ctx.attempt, pid=os.getpid())
    await asyncio.sleep(seconds)
    return "finished"


# -- workflows (issue 12) ---------------------------------------------------------------------------------------
@job
def total(values, extra=0):
    """A chord callback: sums the header results."""
    return sum(values) + extra


@job
def double(x):
    return x * 2


@job(unique=True)
def unique_add(a, b):
    return a + b


@job(unique_for=60)
def unique_recent(a):
    return a


@job(bind=True)
def counts(ctx, n, sleep=0.0):
    """Reports progress per item (coalesced by set_progress)."""
    for i in range(n):
        ctx.set_progress({"done": i + 1, "total": n})
        if sleep:
            time.sleep(sleep)
    return n


@job(max_attempts=10)
def square_slowly(i, sleep=0.0):
    """A chord header job for the kill test: retried after its worker process is SIGKILLed."""
    time.sleep(sleep)
    return i * i


@job(bind=True, max_attempts=10)
def record_callback(ctx, values, path):
    """A chord callback: one line per execution, so running twice shows."""
    _append(path, f"{ctx.job_id} {len(values)} {sum(values)}\n")
    return values


@job
def increment(x, sleep=0.0):
    time.sleep(sleep)
    return x + 1


@job(bind=True)
async def acounts(ctx, n):
    """An async job reporting progress: aset_progress writes (coalesced); set_progress in the loop waits for the end."""
    for i in range(n):
        await ctx.aset_progress({"done": i + 1, "total": n})
    ctx.set_progress({"done": n, "total": n, "last": True})
    return n


@job
def returns_unstorable(label, kind="nul"):
    """Returns ``label``, or for ``label == "bad"`` a value the database cannot store (a NUL in a string, a
    lone surrogate, or nesting too deep), which only the job itself can make (its arguments could not)."""
    if label != "bad":
        return label
    if kind == "nul":
        return {"text": ["fine", "broken\x00here"]}
    if kind == "surrogate":
        return "half a pair: \ud83d"
    deep: list = []
    for _ in range(500):
        deep = [deep]
    return deep


@job
def raises_unstorable():
    """Fails with a message and traceback holding a NUL and a lone surrogate: the error must still be recorded."""
    raise ValueError("bad\x00byte and \udcff half")


@job(bind=True, max_attempts=2, retry_delay=0)  # the refused countdown falls back to an immediate retry
def retries_oddly(ctx, kind):
    """Asks for a retry with a countdown of an odd kind (its arguments cannot carry NaN, so it makes its own)."""
    if ctx.attempt > 1:
        return ctx.attempt
    ctx.retry(countdown={"nan": float("nan"), "far": 1e300, "timedelta": timedelta(0)}[kind])


@job
def stamp(sleep=0.0):
    """Returns when its function started (wall clock) and in which process; sleeps after, if asked."""
    started = time.time()
    time.sleep(sleep)
    return [started, os.getpid()]
