"""The database-level gauges (``djtasks.metrics``): exact counts and estimates against known table contents, the
Django view's text output, the query plans on a big table, and a database that does not answer a scrape."""

from __future__ import annotations

import urllib.request
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from djtasks.cursors import django_store
from djtasks.metrics import gauges, server, views
from djtasks.metrics.database import read
from djtasks.models import Worker
from djtasks.worker.db import WorkerConnection, connection_params
from djtasks.worker.metering import JobMeter
from tests.conftest import make_schedule
from tests.integration.admin_helpers import make_job
from tests.integration.test_query_plans import assert_no_full_scan, plan_nodes

# Per queue: (queued due, scheduled, waiting, running, claimed, succeeded, failed, cancelled). Every status and
# queue appears at least twice, so ANALYZE (which reads the whole small table) keeps every value's exact share.
SCENE = {"default": (3, 1, 0, 2, 1, 60, 20, 10), "other": (2, 0, 2, 0, 0, 30, 10, 5)}


@pytest.fixture
def scene(db):
    now = timezone.now()
    alive = Worker.objects.create(
        id=uuid.uuid4(), hostname="h", pid=1, queues=["default"], concurrency=4, started_at=now, heartbeat_at=now
    )
    Worker.objects.create(
        id=uuid.uuid4(), hostname="h", pid=2, queues=["default"], concurrency=4,
        started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=10),
    )  # fmt: skip
    for queue, (due, later, waiting, running, claimed, succeeded, failed, cancelled) in SCENE.items():
        for i in range(due):
            make_job("queued", queue=queue, run_at=now - timedelta(minutes=10 if queue == "other" else 2, seconds=i))
        for _ in range(later):
            make_job("queued", queue=queue, run_at=now + timedelta(hours=1))
        for _ in range(waiting):
            make_job("waiting", queue=queue)
        for _ in range(running):
            make_job("running", queue=queue, worker_id=alive.id)
        for _ in range(claimed):
            make_job("running", queue=queue, worker_id=alive.id, started_at=None)
        for status, n in (("succeeded", succeeded), ("failed", failed), ("cancelled", cancelled)):
            for _ in range(n):
                make_job(status, queue=queue)
    make_schedule("late", next_fire_at=now - timedelta(seconds=30))
    make_schedule("later", next_fire_at=now + timedelta(minutes=5))
    make_schedule("off", next_fire_at=now - timedelta(hours=1), enabled=False)
    with connection.cursor() as cur:
        cur.execute("ANALYZE djtasks_job")
    return now


def test_snapshot_counts_active_jobs_exactly_and_estimates_the_finished(scene):
    snap = read(django_store(), now=scene, worker_timeout=5)
    for queue, (due, later, waiting, running, claimed, *_) in SCENE.items():
        for status, n in zip(
            ("queued", "scheduled", "waiting", "running", "claimed"),
            (due, later, waiting, running, claimed),
            strict=True,
        ):
            assert snap.jobs[(queue, status)] == n, (queue, status)
    assert snap.finished_estimate == {
        ("default", "succeeded"): 60, ("default", "failed"): 20, ("default", "cancelled"): 10,
        ("other", "succeeded"): 30, ("other", "failed"): 10, ("other", "cancelled"): 5,
    }  # fmt: skip
    assert 600 <= snap.oldest_wait_s["other"] < 610  # its oldest due job has waited 10 minutes and a second
    assert 120 <= snap.oldest_wait_s["default"] < 130
    assert (snap.workers_alive, snap.workers_dead) == (1, 1)
    assert 30 <= snap.schedule_lag_s < 40  # the enabled one 30 s late; the disabled one is not late


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@override_settings(ROOT_URLCONF="tests.metrics_urls")
def test_view_serves_the_gauges_in_prometheus_text_format(scene, client):
    views._registry.cache_clear()
    response = client.get("/ops/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = parse(response.content.decode())
    assert samples[("djtasks_database_up", ())] == 1
    assert samples[("djtasks_jobs", (("queue", "default"), ("status", "queued")))] == 3
    assert samples[("djtasks_jobs", (("queue", "default"), ("status", "running")))] == 2
    assert samples[("djtasks_jobs", (("queue", "default"), ("status", "claimed")))] == 1
    assert samples[("djtasks_jobs", (("queue", "other"), ("status", "waiting")))] == 2
    assert samples[("djtasks_jobs_finished_estimate", (("queue", "other"), ("status", "failed")))] == 10
    assert 600 <= samples[("djtasks_queue_oldest_waiting_seconds", (("queue", "other"),))] < 610
    assert samples[("djtasks_workers_alive", ())] == 1
    assert samples[("djtasks_workers_dead", ())] == 1
    assert 30 <= samples[("djtasks_schedule_lag_seconds", ())] < 40
    assert not any(name.startswith("djtasks_jobs_started") for name, _ in samples), "worker counters are runworker's"
    assert client.post("/ops/metrics").status_code == 405
    views._registry.cache_clear()


@pytest.fixture
def history():
    """200,000 finished jobs, a backlog of 2,000 and 100 running: the shape of a busy site's table."""
    db = WorkerConnection()
    conn = db.connection
    conn.execute(
        "INSERT INTO djtasks_job (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, finished_at,"
        " attempt, max_attempts, errors, cancel_requested)"
        " SELECT gen_random_uuid(), 'x', CASE WHEN i % 3 = 0 THEN 'other' ELSE 'default' END, 0,"
        " CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, '[]', '{}', now() - interval '2 days',"
        " now() - interval '2 days', now() - interval '1 day' + i * interval '1 ms', 1, 1, '[]', false"
        " FROM generate_series(1, 200000) AS i"
    )
    conn.execute(
        "INSERT INTO djtasks_job (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, started_at,"
        " worker_id, attempt, max_attempts, errors, cancel_requested)"
        " SELECT gen_random_uuid(), 'x', 'default', 0, CASE WHEN i <= 100 THEN 'running' ELSE 'queued' END, '[]',"
        " '{}', now() - i * interval '1 s', now(), CASE WHEN i <= 100 THEN now() END,"
        " CASE WHEN i <= 100 THEN gen_random_uuid() END, 0, 1, '[]', false FROM generate_series(1, 2100) AS i"
    )
    conn.execute("VACUUM ANALYZE djtasks_job")
    yield conn
    db.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("queue_stats_waiting", "djtasks_job_claim"),
        ("queue_stats_running", "djtasks_job_running"),
        ("queue_stats_workflow_waiting", "djtasks_job_waiting"),
        ("job_count_estimate", None),
        ("job_stats_estimate", None),
    ],
)
def test_gauge_queries_read_only_the_active_rows(history, name, index):
    nodes = plan_nodes(history, name, {"now": timezone.now()})
    assert_no_full_scan(nodes)
    scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "djtasks_job"]
    indexes = {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("djtasks_job")}
    if index is None:  # the planner's statistics only: the table itself is never read
        assert not scans and not indexes, (scans, indexes)
    else:
        assert indexes == {index}, (scans, indexes)


@pytest.mark.django_db(transaction=True)
def test_a_database_that_does_not_answer_fails_the_scrape_not_the_endpoint(monkeypatch):
    monkeypatch.setattr(server, "STATEMENT_TIMEOUT_MS", 300)
    monkeypatch.setattr(gauges, "CACHE_S", 0.0)
    metrics = server.MetricsServer(0, "127.0.0.1")
    metrics.start()
    try:
        meter = JobMeter(metrics.add)
        meter.ended("default", "some.job", "succeeded", 0.2)
        meter.ship()

        def scrape() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=20) as response:
                return parse(response.read().decode())

        assert scrape()[("djtasks_database_up", ())] == 1
        with psycopg.connect(**connection_params()) as blocker:
            blocker.execute("LOCK TABLE djtasks_worker IN ACCESS EXCLUSIVE MODE")  # the read waits, then times out
            samples = scrape()
            assert samples[("djtasks_database_up", ())] == 0
            assert not any(name == "djtasks_workers_alive" for name, _ in samples)
            finished = (
                "djtasks_jobs_finished_total",
                (("name", "some.job"), ("outcome", "succeeded"), ("queue", "default")),
            )
            assert samples[finished] == 1, "the worker counters are still served"
        assert scrape()[("djtasks_database_up", ())] == 1, "the next scrape reads again"
    finally:
        metrics.close()
