"""The Celery side of the comparison: an app on a local Redis broker, a no-op task and a time stamp task.

The broker is the ``redis-server`` that ``celery_bench.py`` starts on a unix socket in a temporary
directory (``BENCH_REDIS_SOCKET``). Results are ignored (``task_ignore_result``): there is no result backend,
so Celery does no work per task beyond its broker round trips.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

SOCKET = os.environ.get("BENCH_REDIS_SOCKET", "/tmp/bench-redis.sock")

app = Celery("bench_celery", broker=f"redis+socket://{SOCKET}")
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    """One Redis client per process (prefork children each open their own on first use)."""
    global _client  # noqa: PLW0603 - a lazily opened per-process connection
    if _client is None:
        _client = redis.Redis(unix_socket_path=SOCKET)
    return _client


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: what is measured is the queue, not the job."""


@app.task(name="bench.stamp")
def stamp(key: str) -> None:
    """Records, first thing, when it started: the drain's start/end markers and the pick-up samples."""
    started = time.time()
    _redis().rpush(key, repr(started))
