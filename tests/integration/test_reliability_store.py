"""The queries behind rescue, time limits, cancel and maintenance locks: one test (at least) per named query."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from djtasks.ids import uuid7
from djtasks.maintenance.rescuer import Rescuer
from djtasks.maintenance.runner import MaintenanceRunner
from djtasks.models import Job, Worker
from djtasks.store import queries
from djtasks.worker.db import WorkerConnection
from tests.integration.test_store import job_row

pytestmark = pytest.mark.django_db(transaction=True)

NEW_QUERIES = {
    "job_cancel_requested",
    "job_terminate_requested_many",
    "worker_rescue_many",
    "maintenance_lock",
}


def register(store, worker, *, at):
    store.worker_register(now=at, id=worker, hostname="h", pid=4242, queues='["default"]', concurrency=4)


def claim(store, worker, n=1, **row_options):
    store.job_insert_many(now=timezone.now(), jobs=[job_row(**row_options) for _ in range(n)])
    return store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=n)


def start(store, worker, *jobs, at=None):
    """Mark claimed jobs as started, the way the completer does (a start mark in job_finish_many)."""
    at = at or timezone.now()
    marks = [{"id": j["id"], "attempt": j["attempt"], "started_at": at} for j in jobs]
    assert store.job_finish_many(worker_id=worker, outcomes=[], marks=marks) == set()


def server_started_at():
    with connection.cursor() as cur:
        cur.execute("SELECT pg_postmaster_start_time()")
        return cur.fetchone()[0]


def later_than_server_start(seconds=120):
    """A ``now`` at which the test server has been up for ``seconds`` (it may have started a moment ago)."""
    return max(timezone.now(), server_started_at() + timedelta(seconds=seconds))


def test_new_queries_are_named():
    assert set(queries()) >= NEW_QUERIES


def test_time_limits_are_stored_and_returned_by_the_claim(store):
    store.job_insert(now=timezone.now(), **job_row(time_limit=10.0, soft_time_limit=5.0))
    store.job_insert_many(now=timezone.now(), jobs=[job_row(time_limit=3.5), job_row()])
    rows = store.job_claim_many(now=timezone.now(), worker_id=uuid7(), queues=["default"], limit=3)
    assert sorted((r["time_limit"] or 0, r["soft_time_limit"] or 0) for r in rows) == [(0, 0), (3.5, 0), (10, 5)]


def test_worker_register_twice_is_an_upsert(store):
    worker, t0 = uuid7(), timezone.now()
    register(store, worker, at=t0)
    register(store, worker, at=t0 + timedelta(seconds=9))  # e.g. a retry after a lost answer
    row = Worker.objects.get(id=worker)
    assert row.started_at == t0 and row.heartbeat_at == t0 + timedelta(seconds=9)


def test_job_cancel_requested_and_terminate_requested_many(store):
    worker, other = uuid7(), uuid7()
    (a, b) = claim(store, worker, 2)
    (c,) = claim(store, other)
    assert store.job_cancel_requested(a["id"]) is False
    assert store.job_cancel_many(now=timezone.now(), ids=[a["id"]]) == {a["id"]: "running"}
    assert store.job_cancel_many(now=timezone.now(), ids=[b["id"], c["id"]], terminate=True) == {
        b["id"]: "running",
        c["id"]: "running",
    }
    assert store.job_cancel_requested(a["id"]) is True and store.job_cancel_requested(uuid7()) is False
    assert not Job.objects.get(id=a["id"]).terminate_requested
    found = store.job_terminate_requested_many(worker_ids=[worker])
    assert [(r["id"], r["worker_id"], r["attempt"]) for r in found] == [(b["id"], worker, 1)]
    assert store.job_terminate_requested_many(worker_ids=[]) == []


def test_job_finish_many_never_retries_a_job_asked_to_cancel(store):
    worker = uuid7()
    a, b, c = claim(store, worker, 3, max_attempts=3)
    store.job_cancel_many(now=timezone.now(), ids=[a["id"], b["id"], c["id"]])
    now = timezone.now()
    error = '{"type": "builtins.ValueError", "message": "stop", "traceback": "", "attempt": 1}'
    written = store.job_finish_many(
        worker_id=worker,
        outcomes=[
            {"id": a["id"], "attempt": 1, "status": "queued", "error": error, "run_at": now, "finished_at": now},
            {"id": b["id"], "attempt": 1, "status": "failed", "error": error, "finished_at": now},
            {"id": c["id"], "attempt": 1, "status": "succeeded", "result": "1", "finished_at": now},
        ],
    )
    assert written == {a["id"], b["id"], c["id"]}
    assert Job.objects.get(id=a["id"]).status == "cancelled" and Job.objects.get(id=a["id"]).finished_at == now
    assert Job.objects.get(id=b["id"]).status == "cancelled"
    assert Job.objects.get(id=c["id"]).status == "succeeded"  # it finished before it looked: the work is done


def test_job_release_many_cancels_a_job_asked_to_cancel(store):
    worker = uuid7()
    a, b = claim(store, worker, 2)
    store.job_cancel_many(now=timezone.now(), ids=[a["id"]])
    assert store.job_release_many(now=timezone.now(), worker_id=worker) == {a["id"]: "cancelled", b["id"]: "queued"}
    job = Job.objects.get(id=a["id"])
    assert job.attempt == 1 and job.finished_at and job.errors[-1]["type"] == "djtasks.exceptions.JobCancelled"


def test_worker_rescue_many_rescues_silent_workers_only(store):
    now = later_than_server_start()
    dead, live = uuid7(), uuid7()
    register(store, dead, at=now - timedelta(seconds=60))
    register(store, live, at=now)
    retry, spent, cancel = claim(store, dead, 3, max_attempts=2)
    start(store, dead, retry, spent, cancel)
    Job.objects.filter(id=spent["id"]).update(attempt=2)
    store.job_cancel_many(now=now, ids=[cancel["id"]])
    (long_running,) = claim(store, live)
    start(store, live, long_running, at=now - timedelta(hours=5))  # hours, but heartbeating

    rows = store.worker_rescue_many(now=now, cutoff=now - timedelta(seconds=30))
    assert {(r["worker_id"], r["job_id"], r["status"]) for r in rows} == {
        (dead, retry["id"], "queued"),
        (dead, spent["id"], "failed"),
        (dead, cancel["id"], "cancelled"),
    }
    requeued = Job.objects.get(id=retry["id"])
    assert (requeued.status, requeued.attempt, requeued.worker_id, requeued.finished_at) == ("queued", 1, None, None)
    assert requeued.errors[-1]["type"] == "djtasks.exceptions.WorkerLost"
    assert "sent no heartbeat since" in requeued.errors[-1]["message"]
    assert Job.objects.get(id=spent["id"]).errors[-1]["type"] == "djtasks.exceptions.WorkerLost"
    assert Job.objects.get(id=long_running["id"]).status == "running"
    assert list(Worker.objects.values_list("id", flat=True)) == [live]
    # the presumed-dead worker's late result is fenced off: the re-run owns the job now
    late = {"id": retry["id"], "attempt": 1, "status": "succeeded", "result": "3", "finished_at": now}
    assert store.job_finish_many(worker_id=dead, outcomes=[late]) == set()
    assert store.worker_rescue_many(now=now, cutoff=now - timedelta(seconds=30)) == []


def test_worker_rescue_many_by_worker_ids_with_a_reason(store):
    now = timezone.now()
    worker, bystander = uuid7(), uuid7()
    register(store, worker, at=now)
    register(store, bystander, at=now)
    (job,) = claim(store, worker, max_attempts=3)
    start(store, worker, job)
    rows = store.worker_rescue_many(now=now, worker_ids=[worker], reason="pid 4242 died (signal SIGSEGV)")
    assert [(r["worker_id"], r["job_id"], r["status"], r["attempt"]) for r in rows] == [
        (worker, job["id"], "queued", 1)
    ]
    assert Job.objects.get(id=job["id"]).errors[-1]["message"] == "pid 4242 died (signal SIGSEGV)"
    assert list(Worker.objects.values_list("id", flat=True)) == [bystander]
    # a worker that never registered (died starting up) is no error
    assert store.worker_rescue_many(now=now, worker_ids=[uuid7()], reason="x") == []


def test_worker_rescue_many_rescues_running_jobs_of_workers_without_a_row(store):
    now = later_than_server_start()
    gone = uuid7()
    old, recent = claim(store, gone, 2, max_attempts=2)
    Job.objects.filter(id=old["id"]).update(claimed_at=now - timedelta(seconds=60))
    Job.objects.filter(id=recent["id"]).update(claimed_at=now - timedelta(seconds=5))
    rows = store.worker_rescue_many(now=now, cutoff=now - timedelta(seconds=30))
    assert [(r["worker_id"], r["job_id"], r["status"]) for r in rows] == [(gone, old["id"], "queued")]
    assert Job.objects.get(id=recent["id"]).status == "running"


def test_worker_rescue_many_charges_only_started_jobs(store):
    """A job only claimed ahead goes back with its attempt restored and no error entry; a started one (marked in
    the database, or listed by the supervisor from the start board) counts its attempt."""
    now = timezone.now()
    worker = uuid7()
    register(store, worker, at=now)
    marked, listed, ahead, ahead_cancelled = claim(store, worker, 4, max_attempts=1)
    start(store, worker, marked)
    store.job_cancel_many(now=now, ids=[ahead_cancelled["id"]])
    rows = store.worker_rescue_many(
        now=now,
        worker_ids=[worker],
        reason="pid 4242 died (signal SIGKILL)",
        started=[(listed["id"], listed["attempt"]), (ahead["id"], ahead["attempt"] + 1)],  # a stale attempt
    )
    assert {r["job_id"]: (r["status"], r["attempt"], r["charged"]) for r in rows} == {
        marked["id"]: ("failed", 1, True),
        listed["id"]: ("failed", 1, True),
        ahead["id"]: ("queued", 0, False),
        ahead_cancelled["id"]: ("cancelled", 1, False),
    }
    for job in (marked, listed):
        row = Job.objects.get(id=job["id"])
        assert row.errors[-1]["type"] == "djtasks.exceptions.WorkerLost" and row.errors[-1]["attempt"] == 1
        assert row.errors[-1]["message"] == "pid 4242 died (signal SIGKILL)"
    back = Job.objects.get(id=ahead["id"])
    assert (back.status, back.attempt, back.worker_id, back.started_at, back.errors) == ("queued", 0, None, None, [])
    assert back.run_at == ahead["run_at"]  # keeps its place in the queue
    cancelled = Job.objects.get(id=ahead_cancelled["id"])
    assert cancelled.errors[-1]["type"] == "djtasks.exceptions.JobCancelled" and cancelled.finished_at


def test_start_marks_are_fenced_and_never_overwrite_a_start(store):
    worker, other = uuid7(), uuid7()
    a, b = claim(store, worker, 2)
    t0 = timezone.now()
    start(store, other, a)  # not its job
    assert Job.objects.get(id=a["id"]).started_at is None
    start(store, worker, a, at=t0)
    start(store, worker, a, at=t0 + timedelta(seconds=5))  # a repeated mark keeps the first
    assert Job.objects.get(id=a["id"]).started_at == t0
    # an outcome carries its own start; it does not replace a mark
    outcome = {"id": a["id"], "attempt": 1, "status": "succeeded", "result": "1", "finished_at": t0, "started_at": t0}
    late = {**outcome, "id": b["id"], "started_at": t0 + timedelta(seconds=1)}
    assert store.job_finish_many(
        worker_id=worker, outcomes=[{**outcome, "started_at": t0 + timedelta(seconds=9)}, late]
    ) == {
        a["id"],
        b["id"],
    }
    assert Job.objects.get(id=a["id"]).started_at == t0
    assert Job.objects.get(id=b["id"]).started_at == t0 + timedelta(seconds=1)


def test_worker_rescue_many_waits_after_a_server_restart(store):
    """Heartbeats stop while the server is down: silence that began before the server (re)started is not
    evidence of death until the server has been up for WORKER_TIMEOUT."""
    started = server_started_at()
    worker = uuid7()
    register(store, worker, at=started - timedelta(hours=1))
    claim(store, worker)
    cutoff = started - timedelta(seconds=1)  # the server came up less than WORKER_TIMEOUT ago
    assert store.worker_rescue_many(now=started + timedelta(seconds=29), cutoff=cutoff) == []
    assert Worker.objects.filter(id=worker).exists()
    rows = store.worker_rescue_many(now=timezone.now(), cutoff=started + timedelta(seconds=1))
    assert [r["worker_id"] for r in rows] == [worker]


def advisory_locks() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return cur.fetchone()[0]


def test_maintenance_lock_is_exclusive_across_sessions_and_ends_with_the_transaction(store):
    other = WorkerConnection()
    try:
        with store.maintenance_locked(name="rescuer") as held:
            assert held is True
            with other.store.maintenance_locked(name="rescuer") as other_held:
                assert other_held is False
            with other.store.maintenance_locked(name="pruner") as other_held:
                assert other_held is True  # one lock per service
            assert advisory_locks() == 1
        assert advisory_locks() == 0, "the commit released it: no session keeps a maintenance lock"
        with other.store.maintenance_locked(name="rescuer") as other_held:
            assert other_held is True
        with pytest.raises(RuntimeError), store.maintenance_locked(name="pruner") as held:
            assert held and advisory_locks() == 1
            raise RuntimeError("the service failed")
        assert advisory_locks() == 0, "a rollback releases it too"
        # In autocommit a lone statement's transaction ends at once: taking it there holds nothing.
        assert store.maintenance_lock(name="rescuer") is True
        assert advisory_locks() == 0
    finally:
        other.close()


def test_rescuer_run_once_takes_now_and_the_runner_holds_the_lock(store):
    now = timezone.now()
    dead = uuid7()
    register(store, dead, at=now - timedelta(seconds=10))
    (job,) = claim(store, dead, max_attempts=2)
    start(store, dead, job)
    runner = MaintenanceRunner()
    rescuer = Rescuer(runner.store, worker_timeout=30, interval=1)
    try:
        assert not rescuer.run_once(now)  # 10 s of silence is not 30
        holder = WorkerConnection()
        try:
            with holder.store.maintenance_locked(name="rescuer") as held:
                assert held
                assert runner.run_service(rescuer) is None  # another process is rescuing: skip
        finally:
            holder.close()
        result = runner.run_service(Rescuer(runner.store, worker_timeout=0.5, interval=1))
        assert result.workers == {dead} and result.requeued == (job["id"],) and result.jobs == {job["id"]: 1}
        assert advisory_locks() == 0  # the runner's transaction ended with the run
        assert not runner.db.connection.info.transaction_status  # idle: nothing left open
    finally:
        runner.db.close()
