"""How a claimed job's run becomes its recorded outcome: retries, failures, bad jobs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from djtasks import JobFailed, JobStatus
from djtasks.ids import uuid7
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def test_retry_with_backoff_until_success():
    result = tasks.flaky.delay(succeed_on=3)
    assert drain() == 1
    job = Job.objects.get(id=result.id)
    assert job.status == "queued" and job.attempt == 1 and len(job.errors) == 1
    # flaky has retry_backoff=1: the second attempt waits 0.5..1 s, the third 1..2 s
    delay = job.run_at - timezone.now()
    assert timedelta(seconds=0.3) < delay <= timedelta(seconds=1)
    assert drain() == 0  # not due yet
    time.sleep(delay.total_seconds() + 0.05)
    assert drain() == 1
    job.refresh_from_db()
    delay = job.run_at - timezone.now()
    assert job.attempt == 2 and timedelta(seconds=0.8) < delay <= timedelta(seconds=2)
    time.sleep(delay.total_seconds() + 0.05)
    assert drain() == 1
    assert result.get(timeout=1) == 3 and result.attempts == 3
    assert [e["attempt"] for e in result.errors] == [1, 2]
    assert list(Execution.objects.order_by("attempt").values_list("attempt", flat=True)) == [1, 2, 3]


def test_retries_stop_at_max_attempts_then_failed():
    result = tasks.flaky.delay(succeed_on=10)
    for _ in range(3):
        Job.objects.filter(id=result.id, status="queued").update(run_at=timezone.now())
        drain()
    assert result.refresh().status == JobStatus.FAILED and result.attempts == 3
    assert len(result.errors) == 3 and result.error["message"] == "attempt 3 fails"


def test_retry_on_limits_which_exceptions_retry():
    retried = tasks.only_keyerror_retries.delay("key")
    failed = tasks.only_keyerror_retries.delay("value")
    drain()  # no backoff: the KeyError job is retried at once until its 3 attempts are spent
    assert retried.refresh().status == JobStatus.FAILED and retried.attempts == 3
    assert [e["type"] for e in retried.errors] == ["builtins.KeyError"] * 3
    assert failed.refresh().status == JobStatus.FAILED and failed.attempts == 1 and len(failed.errors) == 1


def test_ctx_retry_requeues_with_countdown():
    result = tasks.asks_retry.delay()
    drain()
    drain()
    assert result.get(timeout=1) == 2


def test_unknown_job_name_fails_clearly_and_the_next_job_runs():
    from djtasks.cursors import django_store

    bogus = uuid7()
    now = timezone.now()
    django_store().job_insert(
        now=now,
        id=bogus,
        name="nobody.registered.this",
        queue="default",
        priority=0,
        args="[]",
        kwargs="{}",
        run_at=now,
        expires_at=None,
        max_attempts=3,
    )
    good = tasks.add.delay(1, 1)
    assert drain() == 2
    job = Job.objects.get(id=bogus)
    assert job.status == "failed" and job.errors[0]["type"] == "djtasks.exceptions.NotRegistered"
    assert "nobody.registered.this" in job.errors[0]["message"]
    assert good.get(timeout=1) == 2


def test_unserializable_result_fails_the_job_with_serialization_error():
    result = tasks.returns_set.delay()
    drain()
    with pytest.raises(JobFailed) as info:
        result.get(timeout=1)
    assert info.value.exc_type == "djtasks.exceptions.SerializationError"
    assert "result is not JSON-serializable: set" in info.value.message


def test_system_exit_in_a_job_is_a_failure_not_a_crash():
    result = tasks.exits.delay()
    drain()
    assert result.refresh().status == JobStatus.FAILED and result.error["type"] == "builtins.SystemExit"


def test_tagged_types_reach_the_job_intact():
    import datetime as dt
    from decimal import Decimal

    when = dt.datetime(2026, 3, 29, 1, 59, tzinfo=dt.UTC)
    result = tasks.echo.delay(Decimal("9.99"), when=when, day=dt.date(2026, 1, 1))
    drain()
    assert result.get(timeout=1) == {"args": [Decimal("9.99")], "kwargs": {"when": when, "day": dt.date(2026, 1, 1)}}


def test_concurrent_claimers_never_share_a_job():
    """Two connections claim from the same queue at once; every job goes to exactly one of them."""
    import threading

    from djtasks.worker.db import WorkerConnection

    tasks.add.bulk_delay([(i, i) for i in range(3000)])
    claimed: dict[str, list] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def claimer(key: str) -> None:
        db = WorkerConnection()
        worker = uuid7()
        barrier.wait()
        try:
            while rows := db.store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=7):
                claimed[key].extend(r["id"] for r in rows)
        finally:
            db.close()

    threads = [threading.Thread(target=claimer, args=(k,)) for k in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = set(claimed["a"]), set(claimed["b"])
    assert len(a) == len(claimed["a"]) and len(b) == len(claimed["b"])
    assert not a & b
    assert len(a | b) == 3000
    assert a and b, "both claimers should have got work"


def test_skip_locked_lets_a_second_claimer_pass_an_open_claim():
    from djtasks.worker.db import WorkerConnection

    tasks.add.bulk_delay([(i, i) for i in range(4)])
    first, second = WorkerConnection(), WorkerConnection()
    try:
        conn = first.connection
        with conn.transaction():  # the first claim's transaction stays open while the second claims
            mine = first.store.job_claim_many(now=timezone.now(), worker_id=uuid7(), queues=["default"], limit=2)
            started = time.monotonic()
            theirs = second.store.job_claim_many(now=timezone.now(), worker_id=uuid7(), queues=["default"], limit=10)
            assert time.monotonic() - started < 1, "the second claimer must not wait for the first"
        assert len(mine) == 2 and len(theirs) == 2
        assert not {r["id"] for r in mine} & {r["id"] for r in theirs}
    finally:
        first.close()
        second.close()
