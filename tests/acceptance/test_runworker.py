"""Real ``manage.py runworker`` subprocesses against the real database, stopped with real signals."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter

import pytest
from django.utils import timezone

from djtasks import JobResult
from djtasks.cursors import django_store
from djtasks.ids import uuid7
from djtasks.models import Job, Worker
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def statuses() -> Counter:
    return Counter(Job.objects.values_list("status", flat=True))


def test_runworker_runs_200_jobs_each_exactly_once(start_worker):
    worker = start_worker("--processes", "2", "--threads", "4")
    wait_until(lambda: Worker.objects.count() == 2, timeout=30, message="two worker processes")
    results = [tasks.record.delay(f"single-{i}") for i in range(50)]
    results += tasks.record.bulk_delay([(f"bulk-{i}",) for i in range(150)])
    wait_until(lambda: statuses()["succeeded"] == 200, timeout=60, message="200 jobs to succeed")
    per_job = Counter(Execution.objects.values_list("job_id", flat=True))
    assert len(per_job) == 200 and set(per_job.values()) == {1}
    assert {r.id for r in results} == set(per_job)
    assert [r.get(timeout=1) for r in results[:3]] == ["single-0", "single-1", "single-2"]
    assert results[-1].get(timeout=1) == "bulk-149"
    assert worker.stop() == 0
    assert not Worker.objects.exists(), "worker rows are removed on a clean stop"


def test_sigterm_mid_run_finishes_running_jobs_and_loses_nothing(start_worker):
    results = tasks.record.bulk_delay([(f"slow-{i}", 0.3) for i in range(40)])
    worker = start_worker("--processes", "2", "--threads", "2")
    wait_until(lambda: Execution.objects.count() >= 6, timeout=30, message="jobs to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    counts = statuses()
    assert counts["running"] == 0, counts
    assert counts["succeeded"] + counts["queued"] == 40 and counts["succeeded"] >= 6, counts
    # every job that started before the signal was allowed to finish
    started = set(Execution.objects.values_list("job_id", flat=True))
    assert started == set(Job.objects.filter(status="succeeded").values_list("id", flat=True))
    assert set(Job.objects.filter(status="queued").values_list("attempt", flat=True)) <= {0}

    start_worker("--processes", "1", "--threads", "4")
    wait_until(lambda: statuses()["succeeded"] == 40, timeout=60, message="the rest to succeed")
    assert Counter(Execution.objects.values_list("job_id", flat=True)) == Counter({r.id: 1 for r in results})


def test_shutdown_timeout_releases_unfinished_jobs_without_burning_an_attempt(start_worker):
    results = tasks.record.bulk_delay([("long", 30) for _ in range(2)])
    worker = start_worker("--processes", "1", "--threads", "2", "--shutdown-timeout", "0.5")
    wait_until(lambda: Execution.objects.count() == 2, timeout=30, message="both jobs to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    for result in results:
        job = Job.objects.get(id=result.id)
        assert (job.status, job.attempt, job.worker_id) == ("queued", 0, None)
    assert "releasing them to the queue" in worker.log


def test_ctrl_c_sigint_to_the_process_group_stops_cleanly(start_worker):
    tasks.record.bulk_delay([(f"x-{i}", 0.2) for i in range(10)])
    worker = start_worker("--processes", "2", "--threads", "1")
    wait_until(lambda: Execution.objects.count() >= 2, timeout=30, message="jobs to start")
    os.killpg(worker.proc.pid, signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    counts = statuses()
    assert counts["running"] == 0 and counts["succeeded"] + counts["queued"] == 10, counts


def test_unknown_job_fails_and_worker_keeps_going(start_worker):
    now = timezone.now()
    bogus = uuid7()
    django_store().job_insert(
        now=now,
        id=bogus,
        name="not.a.registered.job",
        queue="default",
        priority=5,
        args="[]",
        kwargs="{}",
        run_at=now,
        expires_at=None,
        max_attempts=1,
    )
    good = tasks.add.delay(2, 3)
    start_worker("--processes", "1", "--threads", "1")
    assert good.get(timeout=30) == 5
    bad = JobResult(bogus)
    assert bad.refresh().status == "failed" and bad.error["type"] == "djtasks.exceptions.NotRegistered"


def test_retry_backoff_timing_in_a_real_worker(start_worker):
    result = tasks.flaky.delay(succeed_on=3)
    start_worker("--processes", "1", "--threads", "1")
    assert result.get(timeout=30) == 3
    times = list(Execution.objects.order_by("attempt").values_list("at", flat=True))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    # retry_backoff=1: after attempt 1 wait 0.5..1 s, after attempt 2 wait 1..2 s (plus pick-up time)
    assert 0.5 <= gaps[0] < 1.8, gaps
    assert 1.0 <= gaps[1] < 2.8, gaps


def test_worker_serves_only_its_queues(start_worker):
    other = tasks.on_other.delay()
    default = tasks.add.delay(1, 1)
    start_worker("--processes", "1", "--threads", "2", "--queues", "other")
    assert other.get(timeout=30) == "other"
    assert default.refresh().status == "queued"


def test_runworker_rejects_unknown_queue(start_worker):
    worker = start_worker("--queues", "nope")
    assert worker.wait(timeout=30) != 0
    assert "unknown queue(s) nope" in worker.log


def test_poll_only_worker_without_listen_still_runs_jobs(start_worker):
    """LISTEN=False (e.g. behind a transaction-mode pooler): no notifications, the poll finds the jobs."""
    worker = start_worker("--processes", "1", "--threads", "2", env={"DJTASKS_TEST_LISTEN": "0"})
    wait_until(lambda: Worker.objects.count() == 1, timeout=30, message="the worker to start")
    results = [tasks.add.delay(i, i) for i in range(5)]
    assert [r.get(timeout=30) for r in results] == [0, 2, 4, 6, 8]
    assert worker.stop() == 0


def test_jobs_claimed_ahead_do_not_leave_another_process_idle(start_worker):
    """Jobs of 50 ms with one thread per process: claiming ahead would start none of them within the 20 ms
    window, so each process claims one at a time and both share the work (a fixed prefetch would let the
    first process to wake take the whole batch while the other sat idle)."""
    start_worker("--processes", "2", "--threads", "1")
    wait_until(lambda: Worker.objects.count() == 2, timeout=30, message="two worker processes")
    warm = tasks.record.bulk_delay([(f"warm-{i}", 0.05) for i in range(20)])  # both learn: about 50 ms
    wait_until(lambda: Execution.objects.count() == 20, timeout=30, message="warm-up jobs")
    wait_until(lambda: not Job.objects.filter(status__in=["queued", "running"]).exists(), timeout=30)
    batch = tasks.record.bulk_delay([(f"batch-{i}", 0.05) for i in range(40)])
    wait_until(
        lambda: Job.objects.filter(id__in=[r.id for r in batch], status="succeeded").count() == 40,
        timeout=30,
        message="the batch",
    )
    per_process = Counter(Execution.objects.filter(label__startswith="batch-").values_list("pid", flat=True))
    assert len(per_process) == 2 and min(per_process.values()) >= 10, per_process
    assert len(warm) == 20


def test_prefetching_worker_runs_each_job_once_and_long_jobs_do_not_hold_up_short_ones(start_worker):
    """Short jobs are claimed ahead in batches; a slow job among them occupies one thread, not the batch."""
    start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: Worker.objects.count() == 1, timeout=30, message="the worker to start")
    warm = tasks.record.bulk_delay([(f"warm-{i}",) for i in range(50)])  # teaches it that record() is fast
    wait_until(lambda: Execution.objects.count() == 50, timeout=30, message="warm-up jobs")
    slow = tasks.record.delay("slow", 6.0)
    wait_until(lambda: Execution.objects.filter(label="slow").exists(), timeout=30, message="the slow job")
    started = time.monotonic()
    short = tasks.record.bulk_delay([(f"short-{i}",) for i in range(300)])
    wait_until(
        lambda: Execution.objects.filter(label__startswith="short-").count() == 300, timeout=30, message="short jobs"
    )
    assert time.monotonic() - started < 5.0, "short jobs waited for the slow one (6 s)"
    assert slow.get(timeout=30) == "slow"
    per_job = Counter(Execution.objects.values_list("job_id", flat=True))
    assert set(per_job.values()) == {1} and len(per_job) == 351
    assert {r.id for r in warm + short + [slow]} == set(per_job)
