"""Workflows on real runworker processes: a chord survives a SIGKILLed worker process with its callback run
exactly once, and a long chain survives a PostgreSQL restart."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from django.db import OperationalError, connection

from devtools.localpg import LocalPostgres
from djtasks import JobStatus, chain, chord
from djtasks.models import Job, Worker
from tests.acceptance.support import side_effects, statuses, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance, pytest.mark.slow]

HEADERS = 200
CHAIN_STEPS = 50


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


def _count(status: str) -> int:
    try:
        return statuses()[status]
    except OperationalError:  # our own connection broke with the server: open a new one next time
        connection.close()
        return -1


def test_chord_callback_runs_exactly_once_when_a_worker_process_is_sigkilled(start_worker, tmp_path):
    path = tmp_path / "callback.log"
    callback = chord([tasks.square_slowly.s(i, sleep=0.2) for i in range(HEADERS)],
                     tasks.record_callback.s(str(path))).delay()  # fmt: skip
    args = ("--processes", "2", "--threads", "4")
    first = start_worker(*args)
    start_worker(*args)
    wait_until(lambda: Worker.objects.count() == 4, timeout=60, message="four worker processes")
    wait_until(lambda: statuses()["succeeded"] >= HEADERS // 4, timeout=60, message="a quarter of the headers")
    victims = worker_children(first.proc.pid)
    os.kill(victims[0], signal.SIGKILL)  # mid-run: it holds running header jobs
    killed_at = statuses()["succeeded"]
    assert killed_at < HEADERS
    assert callback.get(timeout=120) == [i * i for i in range(HEADERS)]
    effects = side_effects(path)
    assert list(effects.values()) == [1], effects  # the callback ran exactly once
    lost = sum(any(e["type"] == "djtasks.exceptions.WorkerLost" for e in j.errors) for j in Job.objects.all())
    assert statuses()["succeeded"] == HEADERS + 1
    assert lost >= 1, "the killed process was running header jobs"
    report(
        f"chord of {HEADERS} headers on 2 runworkers (2 processes x 4 threads each), one worker process SIGKILLed "
        f"after {killed_at} headers succeeded: {lost} header job(s) rescued and re-run, callback ran once with "
        f"all {HEADERS} results"
    )


def test_long_chain_survives_a_postgres_restart(start_worker):
    last = chain(
        tasks.increment.s(0, sleep=0.1), *[tasks.increment.s(sleep=0.1) for _ in range(CHAIN_STEPS - 1)]
    ).delay()
    start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: statuses()["succeeded"] >= 10, timeout=60, message="10 steps to run")
    cluster = LocalPostgres(os.environ["DJTASKS_TEST_PGDATA"])
    cluster.restart()
    connection.close()
    done_at_restart = max(_count("succeeded"), _count("succeeded"))
    assert 10 <= done_at_restart < CHAIN_STEPS - 10
    wait_until(lambda: _count("succeeded") >= done_at_restart + 10, timeout=60, message="10 more steps")
    cluster.stop()
    time.sleep(2.0)
    cluster.start()
    connection.close()
    wait_until(lambda: _count("succeeded") == CHAIN_STEPS, timeout=120, message="every step to succeed")
    assert last.get(timeout=5) == CHAIN_STEPS
    assert statuses() == {"succeeded": CHAIN_STEPS}
    assert set(Job.objects.values_list("attempt", flat=True)) == {1}
    assert last.refresh().status == JobStatus.SUCCEEDED
    report(
        f"{CHAIN_STEPS}-step chain: postgres restarted after {done_at_restart} steps and stopped for 2 s later; "
        "every step ran once and the chain finished"
    )
