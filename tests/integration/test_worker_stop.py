"""A worker process that stops leaves no worker row behind, however its heartbeat is timed."""

from __future__ import annotations

import signal
import sys
import threading
import time

import psycopg
import pytest

from djtasks.models import Worker
from djtasks.worker.db import connection_params
from djtasks.worker.process import WorkerConfig, WorkerProcess
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting(conn: psycopg.Connection, statement: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (statement + "%",),
    ).fetchone()
    return bool(row and row[0])


def test_a_heartbeat_after_the_stop_deleted_the_worker_row_does_not_register_it_again():
    """The stop deletes the worker row. A heartbeat that beat after that found no row and registered the
    worker again: a ghost row, until the rescuer declared it dead. Here the row is locked while the stop's
    DELETE waits, and the lock is held past a heartbeat interval, so a heartbeat still running would queue its
    UPDATE behind the DELETE, find the row gone and register it again."""
    config = WorkerConfig(
        queues=("default",),
        threads=1,
        shutdown_timeout=5,
        poll_interval=0.2,
        listen=False,
        heartbeat_interval=0.5,
        alias="default",
    )
    process = WorkerProcess(config)
    failures: list[BaseException] = []

    def orchestrate() -> None:
        try:
            with (
                psycopg.connect(**connection_params(), autocommit=True) as watcher,
                psycopg.connect(**connection_params()) as locker,
            ):
                wait_until(lambda: process.heartbeat.beats >= 1, timeout=10, message="a first heartbeat")
                locker.execute("SELECT 1 FROM djtasks_worker WHERE id = %s FOR UPDATE", (process.id,))
                process.request_stop()
                wait_until(
                    lambda: _waiting(watcher, "DELETE FROM djtasks_worker"), timeout=10, message="the DELETE to wait"
                )
                time.sleep(1.2)  # two heartbeat intervals: a heartbeat still running queues its UPDATE now
                locker.commit()
        except BaseException as exc:
            failures.append(exc)
            process.request_stop()

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)}
    switch = sys.getswitchinterval()
    helper = threading.Thread(target=orchestrate)
    try:
        helper.start()
        assert process.run() == 0  # in this (main) thread: it installs its signal handlers
        helper.join(30)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        sys.setswitchinterval(switch)
    assert not failures, failures
    assert not Worker.objects.filter(id=process.id).exists(), "the stopped worker registered itself again"
