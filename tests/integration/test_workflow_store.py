"""Each workflow named query on its own, and the completer's statement count with hand-offs (real Postgres)."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from djtasks import chain, chord, group
from djtasks.ids import uuid7
from djtasks.models import Group, Job
from djtasks.store import Store, queries
from djtasks.worker.db import WorkerConnection
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

NEW_QUERIES = {
    "job_insert_workflow_many",
    "group_insert_many",
    "job_handoff_many",
    "group_release_many",
    "group_get",
    "group_status_count",
    "job_get_many",
    "job_insert_unique",
    "job_get_by_unique_key",
    "job_progress_set",
}


def row(status="queued", **extra):
    now = timezone.now()
    base = {
        "id": uuid7(),
        "name": tasks.add.name,
        "queue": "default",
        "priority": 0,
        "status": status,
        "args": "[1]",
        "kwargs": "{}",
        "run_at": now,
        "expires_at": None,
        "max_attempts": 1,
        "parent_id": None,
        "group_id": None,
        "on_success": None,
    }
    base.update(extra)
    return base


def finish(store, worker_id, ids, status="succeeded", result="5"):
    now = timezone.now()
    outcomes = [
        {"id": i, "attempt": 1, "status": status, "result": result, "error": None, "run_at": None, "finished_at": now}
        for i in ids
    ]
    return store.job_finish_many(worker_id=worker_id, outcomes=outcomes)


def claim(store, worker_id, limit=1000):
    return store.job_claim_many(now=timezone.now(), worker_id=worker_id, queues=["default"], limit=limit)


def test_queries_exist():
    assert set(queries()) >= NEW_QUERIES


def test_insert_workflow_and_group_then_read(store):
    parent, child = row(), row(status="waiting")
    parent["on_success"] = json.dumps([{"id": str(child["id"]), "pass": True}])
    child["parent_id"] = parent["id"]
    group_id = uuid7()
    child["group_id"] = group_id
    now = timezone.now()
    store.job_insert_workflow_many(now=now, jobs=[parent, child])
    store.group_insert_many(
        now=now,
        groups=[{"id": group_id, "total": 1, "members": json.dumps([str(child["id"])]), "on_success": None,
                 "parent_id": parent["id"]}],
    )  # fmt: skip
    g = store.group_get(group_id)
    assert g["members"] == [child["id"]] and g["remaining"] == 1 and g["parent_id"] == parent["id"]
    assert store.group_status_count(group_id) == {"waiting": 1}
    rows = store.job_get_many([parent["id"], child["id"]])
    assert rows[child["id"]]["parent_id"] == parent["id"] and rows[child["id"]]["status"] == "waiting"
    assert store.job_get(child["id"])["parent_is_group"] is False


def test_handoff_releases_counts_and_release_passes_results(store):
    worker_id = uuid7()
    callback = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.total.s()).delay()
    header = callback.parent
    rows = claim(store, worker_id)
    assert all(r["workflow"] for r in rows)
    first, second = header.results
    # job_finish_many runs job_handoff_many (and group_release_many when the group completes) in its transaction
    finish(store, worker_id, [first.id], result="2")
    assert Group.objects.get(id=header.id).remaining == 1 and callback.refresh().status == "waiting"
    finish(store, worker_id, [second.id], result="4")
    assert Group.objects.get(id=header.id).remaining == 0
    assert callback.refresh().status == "queued" and Job.objects.get(id=callback.id).args == [[2, 4]]
    # a second hand-off of the same ids changes nothing more than the counter (callers pass only fenced ids)
    out = store.job_handoff_many(now=timezone.now(), ids=[first.id])
    assert out["released"] == 0 and out["completed"] == []


def test_group_release_many_directly(store):
    callback = chord([tasks.add.s(1, 1)], tasks.total.s()).delay()
    header = callback.parent
    Job.objects.filter(id=header.results[0].id).update(status="succeeded", result=7)
    with store._atomic():
        store._execute("group_release_many", {"now": timezone.now(), "ids": [header.id]})
    assert Job.objects.get(id=callback.id).args == [[7]] and callback.refresh().status == "queued"


def test_handoff_cascades_a_failure(store):
    worker_id = uuid7()
    last = chain(tasks.add.s(1, 1), tasks.add.s(1), tasks.add.s(1)).delay()
    first = last.parent.parent
    claim(store, worker_id)
    finish(store, worker_id, [first.id], status="failed", result=None)
    assert last.refresh().status == "cancelled" and last.parent.refresh().status == "cancelled"


def mark_started(store, worker_id, rows):
    """Write the start marks of claimed jobs, as the completer does for jobs that run a while."""
    marks = [{"id": r["id"], "attempt": r["attempt"], "started_at": timezone.now()} for r in rows]
    store.job_finish_many(worker_id=worker_id, outcomes=[], marks=marks)


def test_rescue_of_a_failed_step_cascades(store):
    worker_id = uuid7()
    store.worker_register(now=timezone.now(), id=worker_id, hostname="h", pid=1, queues="[]", concurrency=1)
    last = chain(tasks.add.s(1, 1), tasks.add.s(1)).delay()
    mark_started(store, worker_id, claim(store, worker_id))  # only a started job is charged its attempt
    store.worker_rescue_many(now=timezone.now(), worker_ids=[worker_id], reason="died")
    assert last.parent.refresh().status == "failed" and last.refresh().status == "cancelled"


def test_plain_batch_is_one_statement_and_workflow_batch_a_constant_number():
    db = WorkerConnection()
    statements: list[str] = []

    class Counting:
        def __init__(self):
            self.cur = db.connection.cursor()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.cur.close()

        def execute(self, sql, params=None):
            statements.append(sql)
            return self.cur.execute(sql, params)

        def __getattr__(self, name):
            return getattr(self.cur, name)

    store = Store(Counting, atomic=lambda: db.connection.transaction())
    worker_id = uuid7()
    try:
        for _ in range(100):
            tasks.add.delay(1, 1)
        ids = [r["id"] for r in claim(store, worker_id)]
        statements.clear()
        outcomes = [{"id": i, "attempt": 1, "status": "succeeded", "result": "2", "error": None, "run_at": None,
                     "finished_at": timezone.now(), "workflow": False} for i in ids]  # fmt: skip
        assert len(store.job_finish_many(worker_id=worker_id, outcomes=outcomes)) == 100
        assert len(statements) == 1
        Job.objects.all().delete()

        group(chain(tasks.add.s(i, 1), tasks.double.s()) for i in range(100)).delay()
        rows = claim(store, worker_id)
        assert len(rows) == 100
        statements.clear()
        outcomes = [{"id": r["id"], "attempt": 1, "status": "succeeded", "result": "2", "error": None,
                     "run_at": None, "finished_at": timezone.now(), "workflow": r["workflow"]} for r in rows]  # fmt: skip
        assert len(store.job_finish_many(worker_id=worker_id, outcomes=outcomes)) == 100
        assert len(statements) == 2  # the fenced finish, then one hand-off for all 100
        assert Job.objects.filter(status="queued").count() == 100
    finally:
        db.close()


def test_insert_unique_and_get_by_key(store):
    now = timezone.now()
    fields = {k: v for k, v in row().items() if k not in ("status", "parent_id", "group_id", "on_success")}
    job_id, inserted = store.job_insert_unique(now=now, unique_key="k", since=None, **fields)
    assert inserted and job_id == fields["id"]
    dup, inserted = store.job_insert_unique(now=now, unique_key="k", since=None, **{**fields, "id": uuid7()})
    assert not inserted and dup == job_id
    assert store._execute("job_get_by_unique_key", {"unique_key": "k"})[0]["id"] == job_id


def test_progress_set_is_fenced_by_attempt(store):
    worker_id = uuid7()
    result = tasks.add.delay(1, 1)
    assert not store.job_progress_set(id=result.id, attempt=1, progress='{"a": 1}')  # not running
    claim(store, worker_id)
    assert store.job_progress_set(id=result.id, attempt=1, progress='{"a": 1}')
    assert not store.job_progress_set(id=result.id, attempt=2, progress='{"a": 2}')
    assert result.progress == {"a": 1}


def test_prune_keeps_chord_headers_while_the_callback_waits_then_prunes_the_group(store):
    from datetime import timedelta

    from djtasks.maintenance.pruner import run_once

    callback = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.total.s()).delay()
    done, pending = callback.parent.results
    old = timezone.now() - timedelta(days=30)
    Job.objects.filter(id=done.id).update(status="succeeded", result=2, finished_at=old)
    assert store.job_prune_many(statuses=["succeeded"], before=timezone.now(), limit=10) == 0
    Job.objects.filter(id=callback.id).update(status="cancelled", finished_at=old)
    Job.objects.filter(id=pending.id).update(status="cancelled", finished_at=old)
    Group.objects.update(created_at=old)
    run_once(timezone.now(), store, result_ttl=60, failed_result_ttl=60)
    assert not Job.objects.exists() and not Group.objects.exists()


def test_last_headers_finishing_at_once_in_two_workers_release_the_callback_once_with_both_results():
    import threading

    for round_ in range(15):
        Job.objects.all().delete()  # the last round's released callback must not be claimed here
        callback = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.total.s()).delay()
        dbs = [WorkerConnection(), WorkerConnection()]
        workers = [uuid7(), uuid7()]
        rows = [claim(db.store, w, limit=1) for db, w in zip(dbs, workers, strict=True)]
        assert all(len(r) == 1 for r in rows)
        barrier = threading.Barrier(2)

        def finish_one(i, barrier=barrier, rows=rows, dbs=dbs, workers=workers):
            barrier.wait(timeout=10)
            outcome = {"id": rows[i][0]["id"], "attempt": 1, "status": "succeeded", "result": str(10 + i),
                       "error": None, "run_at": None, "finished_at": timezone.now(), "workflow": True}  # fmt: skip
            dbs[i].store.job_finish_many(worker_id=workers[i], outcomes=[outcome])

        threads = [threading.Thread(target=finish_one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for db in dbs:
            db.close()
        header = callback.parent
        assert Group.objects.get(id=header.id).remaining == 0, round_
        row = Job.objects.get(id=callback.id)
        assert row.status == "queued", round_
        by_member = {rows[i][0]["id"]: 10 + i for i in range(2)}
        assert row.args == [[by_member[m.id] for m in header.results]], (round_, row.args)


def test_a_rescued_header_that_reruns_hands_off_once(store):
    first_worker, second_worker = uuid7(), uuid7()
    store.worker_register(now=timezone.now(), id=first_worker, hostname="h", pid=1, queues="[]", concurrency=1)
    callback = chord([tasks.square_slowly.s(2), tasks.square_slowly.s(3)], tasks.total.s()).delay()
    header = callback.parent
    claimed = claim(store, first_worker)
    assert len(claimed) == 2
    mark_started(store, first_worker, claimed)  # started: the rescue counts their attempt
    store.worker_rescue_many(now=timezone.now(), worker_ids=[first_worker], reason="died")  # back to queued
    assert store.group_status_count(header.id) == {"queued": 2}
    again = claim(store, second_worker)
    assert {r["attempt"] for r in again} == {2}
    outcomes = [{"id": r["id"], "attempt": 2, "status": "succeeded", "result": "4", "error": None, "run_at": None,
                 "finished_at": timezone.now(), "workflow": True} for r in again[:1]]  # fmt: skip
    store.job_finish_many(worker_id=second_worker, outcomes=outcomes)
    late = [{**outcomes[0], "attempt": 1}]  # the first attempt's late result: fenced off, hands off nothing
    assert store.job_finish_many(worker_id=first_worker, outcomes=late) == set()
    assert Group.objects.get(id=header.id).remaining == 1 and callback.refresh().status == "waiting"
