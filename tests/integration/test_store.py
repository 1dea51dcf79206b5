"""One test (at least) per named query, against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from djtasks import serialization
from djtasks.ids import uuid7
from djtasks.models import Job, Worker
from djtasks.store import queries

pytestmark = pytest.mark.django_db(transaction=True)


def job_row(**overrides):
    now = timezone.now()
    row = {
        "id": uuid7(),
        "name": "tests.testapp.tasks.add",
        "queue": "default",
        "priority": 0,
        "args": "[1,2]",
        "kwargs": "{}",
        "run_at": now,
        "expires_at": None,
        "max_attempts": 1,
    }
    row.update(overrides)
    return row


def test_every_query_has_a_name_and_body():
    names = set(queries())
    assert {
        "job_insert",
        "job_insert_many",
        "job_claim_many",
        "job_finish_many",
        "job_release_many",
        "job_get",
        "job_next_run_at",
        "queue_listen",
        "worker_register",
        "worker_heartbeat",
        "worker_delete",
    } <= names
    assert all(sql.strip() for sql in queries().values())


def test_job_insert_and_get(store):
    row = job_row()
    store.job_insert(now=timezone.now(), **row)
    got = store.job_get(row["id"])
    assert got["status"] == "queued" and got["attempt"] == 0 and got["name"] == row["name"]
    assert serialization.loads(got["args"]) == [1, 2] and serialization.loads(got["errors"]) == []
    assert store.job_get(uuid7()) is None


def test_job_insert_many(store):
    rows = [job_row(args=f"[{i}, 0]") for i in range(1200)]
    store.job_insert_many(now=timezone.now(), jobs=rows)
    assert Job.objects.count() == 1200
    assert sorted(j.args[0] for j in Job.objects.all()) == list(range(1200))


def test_job_claim_many_takes_at_most_limit_and_marks_running(store):
    store.job_insert_many(now=timezone.now(), jobs=[job_row() for _ in range(5)])
    worker = uuid7()
    claimed = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=3)
    assert len(claimed) == 3
    assert all(r["status"] == "running" and r["attempt"] == 1 for r in claimed)
    assert Job.objects.filter(status="running", worker_id=worker).count() == 3
    assert Job.objects.filter(status="queued").count() == 2


def test_job_claim_many_orders_by_priority_then_run_at(store):
    now = timezone.now()
    low_old = job_row(priority=0, run_at=now - timedelta(seconds=10))
    low_new = job_row(priority=0, run_at=now - timedelta(seconds=5))
    high = job_row(priority=10, run_at=now - timedelta(seconds=1))
    negative = job_row(priority=-5, run_at=now - timedelta(seconds=60))
    future = job_row(priority=100, run_at=now + timedelta(hours=1))
    store.job_insert_many(now=now, jobs=[low_new, negative, future, high, low_old])
    order = [r["id"] for r in store.job_claim_many(now=now, worker_id=uuid7(), queues=["default"], limit=10)]
    assert order == [high["id"], low_old["id"], low_new["id"], negative["id"]]
    assert Job.objects.get(id=future["id"]).status == "queued"  # not due yet


def test_job_claim_many_only_serves_given_queues(store):
    store.job_insert_many(now=timezone.now(), jobs=[job_row(queue="other"), job_row(queue="slow")])
    claimed = store.job_claim_many(now=timezone.now(), worker_id=uuid7(), queues=["other"], limit=10)
    assert [r["queue"] for r in claimed] == ["other"]


def test_job_claim_many_cancels_expired_jobs_instead_of_running_them(store):
    now = timezone.now()
    expired = job_row(expires_at=now + timedelta(seconds=1))
    store.job_insert(now=now, **expired)
    later = now + timedelta(seconds=2)
    rows = store.job_claim_many(now=later, worker_id=uuid7(), queues=["default"], limit=10)
    assert [r["status"] for r in rows] == ["cancelled"]
    job = Job.objects.get(id=expired["id"])
    assert job.status == "cancelled" and job.attempt == 0 and job.worker_id is None
    assert job.errors[0]["type"] == "djtasks.exceptions.JobExpired"


def test_job_finish_many_is_fenced_by_worker_and_attempt(store):
    store.job_insert_many(now=timezone.now(), jobs=[job_row(), job_row()])
    worker = uuid7()
    a, b = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=2)
    now = timezone.now()
    written = store.job_finish_many(
        worker_id=worker,
        outcomes=[
            {"id": a["id"], "attempt": a["attempt"], "status": "succeeded", "result": "3", "finished_at": now},
            {"id": b["id"], "attempt": b["attempt"] + 1, "status": "succeeded", "result": "3", "finished_at": now},
        ],
    )
    assert written == {a["id"]}
    assert (
        store.job_finish_many(
            worker_id=uuid7(),
            outcomes=[
                {"id": b["id"], "attempt": b["attempt"], "status": "succeeded", "result": "3", "finished_at": now},
            ],
        )
        == set()
    )
    assert Job.objects.get(id=a["id"]).status == "succeeded" and Job.objects.get(id=a["id"]).result == 3
    assert Job.objects.get(id=b["id"]).status == "running"
    # a second write for the same attempt changes nothing either: the job is no longer running
    assert (
        store.job_finish_many(
            worker_id=worker,
            outcomes=[
                {"id": a["id"], "attempt": a["attempt"], "status": "failed", "finished_at": now},
            ],
        )
        == set()
    )


def test_job_finish_many_requeues_with_error_and_run_at(store):
    store.job_insert(now=timezone.now(), **job_row(max_attempts=3))
    worker = uuid7()
    (row,) = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=1)
    later = timezone.now() + timedelta(seconds=30)
    error = serialization.dumps({"type": "builtins.ValueError", "message": "x", "traceback": "tb", "attempt": 1})
    store.job_finish_many(
        worker_id=worker,
        outcomes=[
            {
                "id": row["id"],
                "attempt": 1,
                "status": "queued",
                "error": error,
                "run_at": later,
                "finished_at": timezone.now(),
            },
        ],
    )
    job = Job.objects.get(id=row["id"])
    assert job.status == "queued" and job.worker_id is None and job.finished_at is None
    assert abs((job.run_at - later).total_seconds()) < 0.001 and job.errors[0]["message"] == "x"


def test_job_release_many_returns_jobs_without_counting_the_attempt(store):
    store.job_insert_many(now=timezone.now(), jobs=[job_row(), job_row()])
    worker = uuid7()
    row, kept = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=2)
    assert store.job_release_many(now=timezone.now(), worker_id=uuid7()) == {}  # not ours
    released = store.job_release_many(now=timezone.now(), worker_id=worker, keep_ids=[kept["id"]])
    assert released == {row["id"]: "queued"}
    job = Job.objects.get(id=row["id"])
    assert job.status == "queued" and job.attempt == 0 and job.worker_id is None and job.started_at is None
    assert Job.objects.get(id=kept["id"]).status == "running"  # still being run: kept


def test_job_next_run_at(store):
    horizon = timezone.now() + timedelta(minutes=1)
    assert store.job_next_run_at(queues=["default"], horizon=horizon) is None
    soon = timezone.now() + timedelta(seconds=5)
    store.job_insert_many(now=timezone.now(), jobs=[job_row(run_at=soon), job_row(run_at=soon + timedelta(hours=1))])
    assert abs((store.job_next_run_at(queues=["default"], horizon=horizon) - soon).total_seconds()) < 0.001
    assert store.job_next_run_at(queues=["default"], horizon=soon - timedelta(seconds=1)) is None
    assert store.job_next_run_at(queues=["other"], horizon=horizon) is None


def test_queue_listen_receives_notify_from_enqueue_on_commit(store):
    from djtasks.worker.db import WorkerConnection

    listener = WorkerConnection()
    try:
        listener.store.queue_listen()
        row = job_row(queue="other")
        store.job_insert(now=timezone.now(), **job_row(queue="slow", run_at=timezone.now() + timedelta(hours=1)))
        store.job_insert(now=timezone.now(), **row)
        notes = list(listener.connection.notifies(timeout=2, stop_after=1))
        # the job due later sends nothing: workers find it by polling when it becomes due
        assert [(n.channel, n.payload) for n in notes] == [("djtasks", "other")]
        assert list(listener.connection.notifies(timeout=0.2)) == []
    finally:
        listener.close()


def test_worker_register_heartbeat_delete(store):
    worker = uuid7()
    t0 = timezone.now()
    store.worker_register(now=t0, id=worker, hostname="h", pid=1, queues='["default"]', concurrency=4)
    assert Worker.objects.get(id=worker).queues == ["default"]
    assert store.worker_heartbeat(now=t0 + timedelta(seconds=5), id=worker) is True
    assert Worker.objects.get(id=worker).heartbeat_at == t0 + timedelta(seconds=5)
    store.worker_delete(id=worker)
    assert store.worker_heartbeat(now=t0, id=worker) is False


def test_job_cancel_many_cancels_queued_and_flags_running(store):
    store.job_insert_many(now=timezone.now(), jobs=[job_row(), job_row()])
    worker = uuid7()
    (running,) = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=1)
    queued = Job.objects.get(status="queued")
    done = job_row()
    store.job_insert(now=timezone.now(), **done)
    Job.objects.filter(id=done["id"]).update(status="succeeded")
    changed = store.job_cancel_many(now=timezone.now(), ids=[running["id"], queued.id, done["id"]])
    assert changed == {running["id"]: "running", queued.id: "cancelled"}
    queued.refresh_from_db()
    assert queued.status == "cancelled" and queued.errors[-1]["type"] == "djtasks.exceptions.JobCancelled"
    job = Job.objects.get(id=running["id"])
    assert job.status == "running" and job.cancel_requested and job.worker_id == worker
    assert Job.objects.get(id=done["id"]).status == "succeeded"


def test_worker_connection_reopens_after_reset_and_after_the_server_drops_it():
    import psycopg

    from djtasks.worker.db import CONNECTION_ERRORS, WorkerConnection

    db = WorkerConnection()
    try:
        assert db.store.job_get(uuid7()) is None
        db.reset()
        assert db.store.job_get(uuid7()) is None  # a new connection, opened on use
        pid = db.connection.info.backend_pid
        with psycopg.connect(db.connection.info.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(CONNECTION_ERRORS):
            db.store.job_get(uuid7())
        db.reset()
        assert db.store.job_get(uuid7()) is None and db.connection.info.backend_pid != pid
    finally:
        db.close()
