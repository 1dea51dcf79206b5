"""The Celery side of ``bench/scale.py``'s real-job workload: the same body as djtasks' ``insert_and_update``
(``bench/workload.py``: one ORM insert, one ORM update) as a Celery task, on Django's ORM and the benchmark
cluster (``bench.settings``; ``DATABASE_URL`` comes from the parent). ``DJANGO_SETTINGS_MODULE`` is set before
the app is made, so Celery's Django fix-up closes a task's stale connections after it, as djtasks' executor
does (both follow ``CONN_MAX_AGE``). The broker is the ``redis-server`` ``bench/scale.py`` starts
(``BENCH_REDIS_SOCKET``); results are ignored.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django
from celery import Celery

django.setup()

SOCKET = os.environ.get("BENCH_REDIS_SOCKET", "/tmp/bench-redis.sock")

app = Celery("bench_orm", broker=f"redis+socket://{SOCKET}")
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.insert_and_update")
def insert_and_update(n: int) -> None:
    from bench.workload import insert_and_update as body

    body(n)
