"""Unique jobs (race-free, never aborting the caller's transaction) and coalesced progress (real Postgres)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction

from djtasks import JobStatus, job
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_unique_job_dedupes_while_active_then_allows_again():
    first = tasks.unique_add.delay(1, 2)
    again = tasks.unique_add.delay(1, 2)
    other = tasks.unique_add.delay(2, 2)
    assert not first.deduplicated and again.deduplicated and again.id == first.id
    assert not other.deduplicated and other.id != first.id
    drain()
    after = tasks.unique_add.delay(1, 2)  # the first one finished: a new one is inserted
    assert not after.deduplicated and after.id != first.id


def test_unique_key_per_call_and_across_names():
    a = tasks.add.apply_async((1, 1), unique_key="report-7")
    b = tasks.double.apply_async((3,), unique_key="report-7")
    assert b.deduplicated and b.id == a.id and Job.objects.count() == 1


def test_unique_for_covers_recently_finished_jobs():
    first = tasks.unique_recent.delay(5)
    drain()
    assert first.refresh().status == JobStatus.SUCCEEDED
    again = tasks.unique_recent.delay(5)
    assert again.deduplicated and again.id == first.id
    Job.objects.filter(id=first.id).update(enqueued_at=first.refresh()._row["enqueued_at"] - timedelta(seconds=61))
    later = tasks.unique_recent.delay(5)
    assert not later.deduplicated


def test_duplicate_inside_the_callers_transaction_does_not_abort_it():
    with transaction.atomic():
        first = tasks.unique_add.delay(4, 4)
        again = tasks.unique_add.delay(4, 4)
        assert again.deduplicated and again.id == first.id
        assert Job.objects.count() == 1  # the transaction is still usable
    assert Job.objects.count() == 1


def test_unique_under_eight_threads_enqueuing_at_once():
    barrier = threading.Barrier(8)
    results = []
    errors = []

    def enqueue():
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                results.append(tasks.unique_add.delay(9, 9))
                time.sleep(0.05)  # hold the insert uncommitted while the others try
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert Job.objects.filter(name=tasks.unique_add.name).count() == 1
    assert len({r.id for r in results}) == 1 and sum(not r.deduplicated for r in results) == 1


def test_bad_unique_options():
    with pytest.raises(ValueError, match="unique_for"):
        job(unique_for=0)(lambda: None)
    with pytest.raises(TypeError, match="unique_for"):
        job(unique_for="soon")(lambda: None)
    with pytest.raises(ValueError, match="unique_key"):
        tasks.add.apply_async((1, 1), unique_key="")


def test_progress_is_coalesced_and_the_last_value_stored():
    writes = []

    def count(execute, sql, params, many, context):
        if "SET progress" in sql:
            writes.append(time.monotonic())
        return execute(sql, params, many, context)

    result = tasks.counts.delay(300, sleep=0.005)  # ~1.5 s of set_progress calls, 300 of them
    with connection.execute_wrapper(count):
        started = time.monotonic()
        drain()
        elapsed = time.monotonic() - started
    assert result.get(timeout=1) == 300
    assert result.progress == {"done": 300, "total": 300}
    assert 2 <= len(writes) <= elapsed * 2 + 2, (len(writes), elapsed)


def test_progress_rejects_non_json():
    from djtasks.jobs import JobContext

    ctx = JobContext(None, "x", 1, 1, "default")
    with pytest.raises(TypeError, match="progress"):
        ctx.set_progress({1, 2})


def test_progress_of_an_async_job():
    result = tasks.acounts.delay(50)
    drain()
    assert result.get(timeout=1) == 50
    assert result.progress == {"done": 50, "total": 50, "last": True}
