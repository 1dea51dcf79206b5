"""Enqueueing joins the caller's transaction; JobResult reads what workers wrote."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from djtasks import JobFailed, JobResult, JobStatus
from djtasks.exceptions import JobCancelled
from djtasks.models import Job
from djtasks.worker.db import WorkerConnection
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_delay_returns_result_with_id_at_once():
    result = tasks.add.delay(1, 2)
    assert isinstance(result.id, uuid.UUID) and result.id.version == 7
    assert result.status == JobStatus.QUEUED and not result.ready()
    job = Job.objects.get(id=result.id)
    assert job.args == [1, 2] and job.queue == "default" and job.max_attempts == 1


def test_rolled_back_enqueue_never_exists_and_never_runs():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.record.delay("rolled-back")
        raise RuntimeError("abort")
    assert not Job.objects.exists()
    assert drain() == 0
    with pytest.raises(LookupError):
        result.refresh()


def test_committed_enqueue_runs():
    with transaction.atomic():
        result = tasks.record.delay("committed")
    assert drain() == 1
    assert result.get(timeout=1) == "committed"


def test_enqueue_is_invisible_to_workers_until_commit():
    with transaction.atomic():
        tasks.add.delay(1, 1)
        assert drain() == 0  # another connection sees nothing yet
        assert Job.objects.count() == 1  # while this transaction does
    assert drain() == 1


def test_notify_is_delivered_only_on_commit():
    listener = WorkerConnection()
    try:
        listener.store.queue_listen()
        with transaction.atomic():
            tasks.add.delay(1, 1)
            assert list(listener.connection.notifies(timeout=0.3)) == []
        assert [n.payload for n in listener.connection.notifies(timeout=2, stop_after=1)] == ["default"]
        with pytest.raises(ValueError), transaction.atomic():
            tasks.add.delay(1, 1)
            raise ValueError
        assert list(listener.connection.notifies(timeout=0.3)) == []
    finally:
        listener.close()


def test_apply_async_options_are_stored():
    eta = timezone.now() + timedelta(minutes=5)
    job_id = uuid.uuid4()
    result = tasks.add.apply_async(
        args=(1,), kwargs={"b": 2}, eta=eta, queue="other", priority=-3, expires=timedelta(hours=1), job_id=job_id
    )
    job = Job.objects.get(id=job_id)
    assert result.id == job_id
    assert (job.queue, job.priority, job.kwargs) == ("other", -3, {"b": 2})
    assert job.run_at == eta and job.expires_at == job.enqueued_at + timedelta(hours=1)
    countdown = tasks.add.apply_async(args=(1, 2), countdown=30)
    job = Job.objects.get(id=countdown.id)
    assert timedelta(seconds=29.9) < job.run_at - job.enqueued_at < timedelta(seconds=30.1)


def test_countdown_job_does_not_run_early():
    result = tasks.add.apply_async(args=(1, 2), countdown=0.6)
    assert drain() == 0
    time.sleep(0.7)
    assert drain() == 1 and result.get(timeout=1) == 3


def test_expired_job_is_never_run():
    result = tasks.record.apply_async(args=("expired",), countdown=0.1, expires=0.2)
    time.sleep(0.3)
    assert drain() == 0
    assert result.refresh().status == JobStatus.CANCELLED
    with pytest.raises(JobCancelled, match="JobExpired"):
        result.get(timeout=1)
    from tests.testapp.models import Execution

    assert not Execution.objects.exists()


def test_bulk_delay_inserts_all_in_one_transaction():
    results = tasks.add.bulk_delay([(i, i) for i in range(12000)])
    assert len(results) == 12000 and Job.objects.count() == 12000
    assert Job.objects.filter(status="queued").count() == 12000
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.bulk_delay([(1, 1)] * 10)
        raise RuntimeError
    assert Job.objects.count() == 12000


def test_bulk_delay_accepts_signatures_with_options():
    results = tasks.add.bulk_delay([(1, 2), tasks.add.s(3, b=4).set(queue="other", priority=7)])
    jobs = {j.id: j for j in Job.objects.all()}
    assert jobs[results[1].id].kwargs == {"b": 4} and jobs[results[1].id].queue == "other"
    assert jobs[results[1].id].priority == 7
    assert drain() == 2 and [r.get(timeout=1) for r in results] == [3, 7]


def test_get_times_out_while_queued():
    result = tasks.add.delay(1, 2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2


def test_get_waits_for_a_worker_in_another_thread():
    result = tasks.add.delay(20, 22)
    threading.Timer(0.3, drain).start()
    assert result.get(timeout=5) == 42


def test_get_raises_job_failed_with_remote_error():
    result = tasks.boom.delay("kaput")
    drain()
    with pytest.raises(JobFailed) as info:
        result.get(timeout=1)
    assert info.value.exc_type == "builtins.ValueError" and info.value.message == "kaput"
    assert "raise ValueError(message)" in info.value.traceback
    assert result.failed() and not result.successful() and result.attempts == 1
    assert result.get(propagate=False)["message"] == "kaput"


def test_job_result_from_id_string_anywhere():
    result = tasks.add.delay(2, 2)
    drain()
    again = JobResult(str(result.id))
    assert again.successful() and again.result == 4 and again.name == tasks.add.name and again.error is None


def test_aget():
    from asgiref.sync import async_to_sync

    result = tasks.add.delay(3, 4)
    drain()

    async def wait() -> int:
        return await result.aget(timeout=2)

    assert async_to_sync(wait)() == 7


def test_cancel_a_queued_job_means_it_never_runs():
    result = tasks.record.delay("never")
    assert result.cancel() is True
    assert result.status == JobStatus.CANCELLED
    assert drain() == 0
    with pytest.raises(JobCancelled):
        result.get(timeout=1)
    assert result.cancel() is False  # already finished


def test_bulk_delay_keeps_times_and_arguments_exactly():
    import datetime as dt
    from decimal import Decimal

    when = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    results = tasks.echo.bulk_delay(
        [
            (Decimal("1.10"), when, 'quote"and\\backslash', "ünïcode"),
            tasks.echo.s(x=[1, {"y": None}]).set(countdown=60, expires=120),
            (),
        ]
    )
    jobs = {j.id: j for j in Job.objects.all()}
    delayed = jobs[results[1].id]
    assert delayed.run_at - delayed.enqueued_at == timedelta(seconds=60)
    assert delayed.expires_at - delayed.enqueued_at == timedelta(seconds=120)
    assert jobs[results[0].id].run_at == jobs[results[0].id].enqueued_at
    assert drain() == 2
    assert results[0].get(timeout=1) == {
        "args": [Decimal("1.10"), when, 'quote"and\\backslash', "ünïcode"],
        "kwargs": {},
    }
    assert results[2].get(timeout=1) == {"args": [], "kwargs": {}}
