"""The operator operations behind the admin's actions and their named queries, on a real database:
job_retry_many, job_requeue_many, job_delete_many, job_count_estimate and the queue_stats_* / worker_list
queries behind the dashboard."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from djtasks import JobResult, JobStatus
from djtasks.cursors import django_store
from djtasks.dashboard import summary
from djtasks.models import Job, Worker
from djtasks.operations import delete_jobs, requeue_jobs, retry_jobs
from djtasks.worker.db import WorkerConnection
from tests.conftest import drain
from tests.integration.admin_helpers import make_job
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_retry_notifies_the_queue_and_a_worker_runs_the_job_again():
    job = make_job("failed", name="tests.testapp.tasks.add", args=[2, 3], queue="other")
    listener = WorkerConnection()
    try:
        listener.store.queue_listen()
        assert retry_jobs([str(job.id)]) == {job.id}
        notes = list(listener.connection.notifies(timeout=2, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("djtasks", "other")]
    finally:
        listener.close()
    assert drain() == 1
    result = JobResult(job.id)
    assert result.get(timeout=1) == 5 and result.attempts == 2
    assert len(result.errors) == 1, "the first attempt's error is kept"


def test_a_retried_job_that_fails_again_records_its_second_error():
    result = tasks.boom.delay("first")
    drain()
    assert result.refresh().status == JobStatus.FAILED
    retry_jobs([result.id])
    drain()
    assert result.refresh().status == JobStatus.FAILED and result.attempts == 2
    assert [e["attempt"] for e in result.errors] == [1, 2]


def test_retry_clears_a_past_expiry_and_skips_other_states():
    now = timezone.now()
    expired = make_job("cancelled", expires_at=now - timedelta(minutes=1))
    later = make_job("cancelled", expires_at=now + timedelta(hours=1))
    others = [make_job(s) for s in ("queued", "running", "succeeded")]
    assert retry_jobs([expired.id, later.id, *(o.id for o in others), uuid.uuid4()]) == {expired.id, later.id}
    expired.refresh_from_db()
    later.refresh_from_db()
    assert expired.expires_at is None and later.expires_at is not None
    assert [Job.objects.get(id=o.id).status for o in others] == ["queued", "running", "succeeded"]


def test_retry_skips_a_job_whose_unique_key_an_active_job_holds():
    make_job("queued", unique_key="report-7")
    held = make_job("failed", unique_key="report-7")
    twins = [make_job("failed", unique_key="report-8") for _ in range(2)]
    retried = retry_jobs([held.id, *(t.id for t in twins)])
    assert held.id not in retried
    assert len(retried & {t.id for t in twins}) == 1, "only one of two jobs with the same key"


def test_requeue_copies_finished_jobs_and_notifies():
    done = make_job("succeeded", queue="slow", args=[1, 1], kwargs={"k": "v"}, max_attempts=3, group_id=uuid.uuid4())
    running = make_job("running")
    listener = WorkerConnection()
    try:
        listener.store.queue_listen()
        copies = requeue_jobs([done.id, running.id])
        assert [n.payload for n in listener.connection.notifies(timeout=2, stop_after=1)] == ["slow"]
    finally:
        listener.close()
    assert list(copies) == [done.id]
    copy = Job.objects.get(id=copies[done.id])
    assert (copy.status, copy.queue, copy.args, copy.kwargs, copy.max_attempts, copy.attempt) == (
        "queued",
        "slow",
        [1, 1],
        {"k": "v"},
        3,
        0,
    )
    assert copy.group_id is None and copy.errors == [] and copy.finished_at is None


def test_delete_keeps_running_jobs_and_works_in_batches(monkeypatch):
    from djtasks import operations

    monkeypatch.setattr(operations, "BATCH_SIZE", 2)
    doomed = [make_job(s) for s in ("queued", "succeeded", "failed", "cancelled", "succeeded")]
    running = make_job("running")
    assert delete_jobs([*(d.id for d in doomed), running.id]) == {d.id for d in doomed}
    assert list(Job.objects.values_list("id", flat=True)) == [running.id]


def test_count_estimate_is_the_planners_or_none_before_any_analyze():
    # The estimate after an ANALYZE of a million rows is checked by bench/admin_timing.py. Not here: an ANALYZE
    # outlives the test (pg_class stats are not rolled back or flushed) and would change later tests' plans.
    tasks.add.bulk_delay([(i, i) for i in range(50)])
    estimate = django_store().job_count_estimate()
    assert estimate is None or estimate >= 0


def test_summary_counts_each_queue_and_the_last_hour():
    now = timezone.now()
    make_job("queued", queue="default", run_at=now - timedelta(minutes=5))
    make_job("queued", queue="default", run_at=now - timedelta(seconds=1))
    make_job("queued", queue="default", run_at=now + timedelta(hours=1))
    make_job("running", queue="other")
    make_job("succeeded", queue="default", finished_at=now - timedelta(minutes=30))
    make_job("succeeded", queue="default", finished_at=now - timedelta(minutes=2))
    make_job("succeeded", queue="default", finished_at=now - timedelta(hours=2))  # outside the window
    make_job("failed", queue="default", finished_at=now - timedelta(minutes=2))
    make_job("cancelled", queue="slow", finished_at=now - timedelta(minutes=1))
    make_job("queued", queue="retired", run_at=now)  # a queue no longer in settings still shows
    alive = Worker.objects.create(
        id=uuid.uuid4(), hostname="h", pid=1, queues=["default", "other"], concurrency=4,
        started_at=now, heartbeat_at=now - timedelta(seconds=1),
    )  # fmt: skip
    Worker.objects.create(
        id=uuid.uuid4(), hostname="h", pid=2, queues=["default"], concurrency=4,
        started_at=now, heartbeat_at=now - timedelta(minutes=5),
    )  # fmt: skip
    Job.objects.filter(status="running").update(worker_id=alive.id)

    data = summary(now)
    queues = {q.name: q for q in data.queues}
    assert list(queues) == ["default", "other", "slow", "retired"]
    d = queues["default"]
    assert (d.queued, d.scheduled, d.running, d.succeeded, d.failed) == (2, 1, 0, 2, 1)
    assert d.oldest_wait_s == pytest.approx(300, abs=5)
    assert d.failure_rate == pytest.approx(1 / 3)
    assert d.workers_alive == 1 and queues["other"].workers_alive == 1 and queues["slow"].workers_alive == 0
    assert queues["other"].running == 1 and queues["slow"].cancelled == 1
    assert not queues["retired"].configured and queues["retired"].queued == 1
    assert len(d.buckets) == 60 and sum(b.succeeded for b in d.buckets) == 2
    assert d.buckets[-2].failed == 1 and d.buckets[30].succeeded == 1
    assert (data.total.queued, data.total.running, data.total.failed) == (3, 1, 1)
    assert (data.workers_alive, data.workers_dead) == (1, 1)
    assert [w.running for w in data.workers] == [1, 0]


def test_retry_clears_a_previous_terminate_request():
    """A job cancelled by killing its process must not be killed again when an operator retries it."""
    from djtasks.models import Job
    from djtasks.operations import retry_jobs
    from tests.testapp import tasks as test_tasks

    result = test_tasks.add.delay(1, 2)
    Job.objects.filter(id=result.id).update(status="cancelled", cancel_requested=True, terminate_requested=True)
    assert retry_jobs([result.id]) == {result.id}
    job = Job.objects.get(id=result.id)
    assert (job.status, job.cancel_requested, job.terminate_requested) == ("queued", False, False)
