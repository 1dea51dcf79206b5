"""Chaos: random SIGKILLs of worker processes and supervisors during a run, and a PostgreSQL restart during
another. Every job must succeed; side effects (lines in a file, so the database cannot hide them) must be
recorded at least once, and more than once only for jobs whose worker process was killed while running them."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import uuid
from collections import Counter

import pytest
from django.db import OperationalError, connection

from devtools.localpg import LocalPostgres
from djtasks.models import Job, Worker
from tests.acceptance.support import side_effects, statuses, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance, pytest.mark.slow]

CHAOS_JOBS = 2000
CHAOS_THREADS = 3
CHAOS_MAX_S = 40.0  # kill for at most this long (or until 95% of the jobs are done)
RESTART_JOBS = 500
OUTAGE_S = 3.0


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


def test_chaos_random_sigkills_lose_nothing(start_worker, tmp_path):
    seed = int(os.environ.get("DJTASKS_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    path = tmp_path / "effects.log"
    began = time.monotonic()
    results = tasks.chaos_touch.bulk_delay([(str(path), 0.08) for _ in range(CHAOS_JOBS)])  # max_attempts=25
    args = ("--processes", "2", "--threads", str(CHAOS_THREADS))
    supervisors = [start_worker(*args), start_worker(*args)]
    wait_until(lambda: Worker.objects.count() == 4, timeout=60, message="four worker processes")

    kills: Counter = Counter()
    chaos_until = time.monotonic() + CHAOS_MAX_S
    while time.monotonic() < chaos_until and statuses()["succeeded"] < CHAOS_JOBS * 0.95:
        time.sleep(rng.uniform(0.3, 0.8))
        live = [s for s in supervisors if s.proc.poll() is None]
        if rng.random() < 0.2:
            victim = rng.choice(live)
            victim.proc.send_signal(signal.SIGKILL)  # its worker processes notice and stop on their own
            victim.proc.wait(10)
            kills["supervisor"] += 1
            supervisors.append(start_worker(*args))
        else:
            children = [c for s in live for c in worker_children(s.proc.pid)]
            if children:
                os.kill(rng.choice(children), signal.SIGKILL)
                kills["worker process"] += 1
    chaos_s = time.monotonic() - began

    for supervisor in supervisors:
        supervisor.stop()
    start_worker("--processes", "2", "--threads", "4")  # a fresh worker finishes (and rescues) the rest
    wait_until(lambda: statuses()["succeeded"] == CHAOS_JOBS, timeout=120, message="every job to succeed")
    total_s = time.monotonic() - began

    effects = side_effects(path)
    jobs = {j.id: j for j in Job.objects.all()}
    lost_errors = {
        str(job_id): sum(e["type"] == "djtasks.exceptions.WorkerLost" for e in job.errors)
        for job_id, job in jobs.items()
    }
    assert {str(r.id) for r in results} == set(effects), "every side effect recorded at least once"
    duplicates = sum(n - 1 for n in effects.values())
    for job_id, n in effects.items():
        assert n - 1 <= lost_errors[job_id], (job_id, n, jobs[uuid.UUID(job_id)].errors)
    worker_lost = sum(lost_errors.values())
    # a killed process was running at most --threads jobs
    assert worker_lost <= kills["worker process"] * CHAOS_THREADS, (worker_lost, kills)
    assert statuses() == Counter({"succeeded": CHAOS_JOBS})
    report(
        f"chaos (seed {seed}): {CHAOS_JOBS} jobs, {sum(effects.values())} executions, kills {dict(kills)}, "
        f"jobs lost 0, duplicate executions {duplicates} (all of jobs whose worker process was SIGKILLed while "
        f"running them; {worker_lost} WorkerLost attempts recorded), chaos phase {chaos_s:.1f} s, total {total_s:.1f} s"
    )
    assert sum(kills.values()) >= 10, kills


def _succeeded() -> int:
    try:
        return statuses()["succeeded"]
    except OperationalError:  # our own connection broke with the server: open a new one next time
        connection.close()
        return -1


def test_postgres_restart_mid_run_loses_nothing_and_runs_nothing_twice(start_worker, tmp_path):
    path = tmp_path / "effects.log"
    results = tasks.touch.bulk_delay([(str(path), 0.1) for _ in range(RESTART_JOBS)])  # max_attempts=1
    worker = start_worker("--processes", "2", "--threads", "4")
    wait_until(lambda: len(side_effects(path)) >= 100, timeout=60, message="100 jobs to run")
    cluster = LocalPostgres(os.environ["DJTASKS_TEST_PGDATA"])  # this test session's own cluster
    began = time.monotonic()
    cluster.restart()  # pg_ctl restart -m fast: every connection is cut
    restart_s = time.monotonic() - began
    done_at_restart = len(side_effects(path))
    connection.close()
    # and a longer outage: the server stays down for OUTAGE_S while jobs keep finishing
    wait_until(lambda: len(side_effects(path)) >= 300, timeout=60, message="300 jobs to run")
    done_at_stop = len(side_effects(path))
    cluster.stop()
    time.sleep(OUTAGE_S)
    done_while_down = len(side_effects(path)) - done_at_stop
    cluster.start()
    connection.close()
    wait_until(lambda: _succeeded() == RESTART_JOBS, timeout=120, message="every job to succeed")

    effects = side_effects(path)
    assert set(effects) == {str(r.id) for r in results}
    assert set(effects.values()) == {1}, "none ran twice"
    assert set(Job.objects.values_list("attempt", flat=True)) == {1}
    assert not any(Job.objects.values_list("errors", flat=True))
    log = worker.log
    assert "producer lost the database" in log
    report(
        f"postgres restart ({restart_s:.1f} s) after {done_at_restart} of {RESTART_JOBS} jobs, then {OUTAGE_S:.0f} s "
        f"down after {done_at_stop} (jobs finished while it was down: {done_while_down}): all succeeded, none twice; "
        f"outcome writes retried {log.count('outcomes failed')} time(s), heartbeats failed "
        f"{log.count('heartbeat failed')}, rescues {log.count('dead worker(s)')}"
    )
    # the jobs running when it went down finished while it was away; their results were recorded on return
    assert done_while_down > 0 and "outcomes failed" in log
    assert "dead worker(s)" not in log, "nobody was declared dead because of the outage"
    assert worker.stop() == 0
    assert not Worker.objects.exists()


def test_runworker_started_while_the_database_is_down_waits_for_it(start_worker, tmp_path):
    path = tmp_path / "effects.log"
    results = tasks.touch.bulk_delay([(str(path),) for _ in range(20)])
    cluster = LocalPostgres(os.environ["DJTASKS_TEST_PGDATA"])
    cluster.stop()
    try:
        worker = start_worker("--processes", "2", "--threads", "2")
        time.sleep(OUTAGE_S)
        assert worker.proc.poll() is None, "it waits for the database instead of exiting"
    finally:
        cluster.start()
        connection.close()
    wait_until(lambda: _succeeded() == 20, timeout=60, message="the jobs to run once the database is back")
    assert set(side_effects(path).values()) == {1} and len(side_effects(path)) == len(results)
    assert "cannot register worker" in worker.log
    assert worker.stop() == 0
