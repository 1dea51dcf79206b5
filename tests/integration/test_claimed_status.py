"""A job a worker claimed ahead is not shown as running: JobResult, the admin and the dashboard agree."""

from __future__ import annotations

import pytest
from django.utils import timezone

from djtasks import JobResult, JobStatus
from djtasks.dashboard import summary
from djtasks.ids import uuid7
from djtasks.models import Job
from tests.integration.test_store import job_row

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_claimed_job_is_queued_until_its_start_is_marked(store, admin_client):
    worker = uuid7()
    store.worker_register(now=timezone.now(), id=worker, hostname="h", pid=1, queues='["default"]', concurrency=4)
    store.job_insert_many(now=timezone.now(), jobs=[job_row()])
    (claimed,) = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=1)
    row = Job.objects.get(id=claimed["id"])
    assert (row.status, row.started_at, row.worker_id) == ("running", None, worker) and row.claimed_at

    assert JobResult(claimed["id"]).status == JobStatus.QUEUED
    now = summary()
    default = next(q for q in now.queues if q.name == "default")
    assert (default.running, default.claimed) == (0, 1)
    assert [(w.running, w.claimed) for w in now.workers] == [(0, 1)]
    page = admin_client.get("/admin/djtasks/job/").content.decode()
    assert ">claimed</span>" in page and "djtasks-queued" in page and ">running</span>" not in page
    listed = admin_client.get("/admin/djtasks/job/?status=claimed").content.decode()
    assert str(claimed["id"]) in listed
    assert str(claimed["id"]) not in admin_client.get("/admin/djtasks/job/?status=running").content.decode()

    mark = {"id": claimed["id"], "attempt": 1, "started_at": timezone.now()}
    store.job_finish_many(worker_id=worker, outcomes=[], marks=[mark])
    assert JobResult(claimed["id"]).status == JobStatus.RUNNING
    default = next(q for q in summary().queues if q.name == "default")
    assert (default.running, default.claimed) == (1, 0)
    assert str(claimed["id"]) in admin_client.get("/admin/djtasks/job/?status=running").content.decode()
