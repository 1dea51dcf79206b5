"""Hard and soft time limits in a real ``runworker``."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from djtasks.models import Job, Worker
from tests.acceptance.support import alive, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def test_hard_time_limit_kills_only_the_overdue_jobs_process(start_worker):
    worker = start_worker("--processes", "2", "--threads", "2")
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="two worker processes")
    pids_before = set(worker_children(worker.proc.pid))
    # 1 overdue job (time_limit=1.5 s, sleeps 60 s) and 3 bystanders of 3 s: with 2 processes x 2 threads,
    # one bystander shares the overdue job's process and two run in the other process.
    overdue = tasks.overdue.delay(60)
    bystanders = [tasks.record.delay(f"bystander-{i}", 3) for i in range(3)]
    wait_until(lambda: Execution.objects.count() == 4, timeout=30, message="all four jobs to start")
    started = time.monotonic()
    victim = Execution.objects.get(label="overdue").pid
    assert victim in pids_before

    wait_until(lambda: overdue.refresh().status == "failed", timeout=30, message="the overdue job to fail")
    killed_after = time.monotonic() - started
    assert overdue.error["type"] == "djtasks.exceptions.TimeLimitExceeded"
    assert "time_limit of 1.5 s" in overdue.error["message"] and overdue.attempts == 1
    assert killed_after < 1.5 + 5, killed_after
    wait_until(lambda: not alive(victim), timeout=10, message="the overdue job's process to be gone")

    wait_until(lambda: all(r.refresh().status == "succeeded" for r in bystanders), timeout=60, message="bystanders")
    runs = Counter(Execution.objects.filter(label__startswith="bystander").values_list("job_id", "pid"))
    by_job = Counter(job_id for job_id, _ in runs)
    survivors = {pid for (_, pid) in runs if pid != victim and pid in pids_before}
    # jobs in the other process ran once and were not disturbed; the victim's bystander was handed back
    # (attempt not counted) and ran again in a fresh process
    assert len(survivors) == 1
    other_jobs = {job_id for (job_id, pid) in runs if pid in survivors}
    assert all(by_job[j] == 1 for j in other_jobs)
    for r in bystanders:
        assert r.attempts == 1, "a released bystander does not burn an attempt"
    wait_until(lambda: len(worker_children(worker.proc.pid)) == 2, timeout=30, message="a replacement process")
    assert victim not in worker_children(worker.proc.pid)
    assert worker.stop() == 0


def test_call_time_limit_retries_while_attempts_remain(start_worker):
    result = tasks.survive.apply_async(args=("slow-first", 60), time_limit=1)  # max_attempts=3
    start_worker("--processes", "1", "--threads", "1")
    # attempt 1 sleeps past the limit and is killed; attempt 2 is quick
    assert result.get(timeout=60) == "slow-first"
    assert result.attempts == 2
    assert [e["type"] for e in result.errors] == ["djtasks.exceptions.TimeLimitExceeded"]
    assert Job.objects.get(id=result.id).time_limit == 1


def test_soft_time_limit_raises_inside_the_job(start_worker):
    cleaned = tasks.soft_limited.delay()
    uncaught = tasks.soft_uncaught.delay()
    untouched = tasks.add.delay(2, 2)
    worker = start_worker("--processes", "1", "--threads", "3")
    elapsed = cleaned.get(timeout=30)
    assert 0.5 <= elapsed < 3, elapsed  # the job caught it, cleaned up and returned
    assert Execution.objects.filter(label="cleaned up").count() == 1
    wait_until(lambda: uncaught.refresh().status == "failed", timeout=30, message="the uncaught one to fail")
    assert uncaught.error["type"] == "djtasks.exceptions.SoftTimeLimitExceeded"
    assert untouched.get(timeout=10) == 4
    # the process was not killed: soft limits are handled inside it
    assert Worker.objects.count() == 1
    assert "exceeded its time_limit" not in worker.log
    assert worker.stop() == 0
