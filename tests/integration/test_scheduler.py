"""The scheduler's ``sync`` and ``run_once(now)`` with fixed times, and schedulers racing for one tick."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from djtasks.maintenance.scheduler import Scheduler, row_of
from djtasks.models import Job, Schedule
from djtasks.worker.db import WorkerConnection
from tests.conftest import drain, make_schedule

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)  # in the past, so workers can claim the jobs
S = timedelta(seconds=1)


@pytest.fixture
def scheduler():
    db = WorkerConnection(role="test-scheduler")
    yield Scheduler.for_connection(db)
    db.close()


def schedule(name="s", **fields):
    return make_schedule(name, **{"next_fire_at": NOW, **fields})


def jobs(name="tests.testapp.tasks.tick"):
    return list(Job.objects.filter(name=name).order_by("run_at"))


def test_run_once_fires_a_due_tick_once_and_says_when_the_next_is_due(scheduler):
    s = schedule(kwargs={"label": "x"}, priority=7, queue="other")
    assert scheduler.run_once(NOW - S).fired == []  # not yet due
    result = scheduler.run_once(NOW + 2 * S)
    assert [f.name for f in result.fired] == ["s"] and result.jobs == 1
    assert result.next_fire_at == NOW + 10 * S
    [job] = jobs()
    assert (job.run_at, job.enqueued_at, job.kwargs, job.queue, job.priority) == (
        NOW,
        NOW + 2 * S,
        {"label": "x"},
        "other",
        7,
    )
    s.refresh_from_db()
    assert (s.next_fire_at, s.last_fire_at, s.last_job_id, s.last_status) == (NOW + 10 * S, NOW, job.id, "enqueued")
    assert scheduler.run_once(NOW + 3 * S).fired == []  # same tick: nothing more
    assert len(jobs()) == 1
    assert drain() == 1 and Job.objects.get(id=job.id).result == "x"


def test_cron_schedule_in_its_zone(scheduler):
    paris = datetime(2030, 3, 31, 0, 0, tzinfo=UTC)  # spring forward day
    schedule(interval_seconds=None, cron="30 2 * * *", timezone="Europe/Paris", next_fire_at=paris)
    scheduler.run_once(paris)
    # 02:30 does not exist in Paris that night: the next tick is 03:00 CEST = 01:00 UTC
    assert Schedule.objects.get().next_fire_at == datetime(2030, 3, 31, 1, 0, tzinfo=UTC)


def test_catch_up_skip_fires_once_after_downtime_then_resumes(scheduler):
    schedule(catch_up="skip")
    result = scheduler.run_once(NOW + 95 * S)
    assert [j.run_at for j in jobs()] == [NOW + 90 * S]
    assert result.next_fire_at == NOW + 100 * S
    assert "missed ticks merged" in Schedule.objects.get().last_status


def test_catch_up_all_fires_every_missed_tick(scheduler):
    schedule(catch_up="all", interval_seconds=1.0)
    result = scheduler.run_once(NOW + 149.5 * S)  # 150 ticks due: 100 this fire, 50 the next
    assert result.jobs == 100 and result.next_fire_at <= NOW + 149.5 * S
    result = scheduler.run_once(NOW + 149.5 * S)
    assert result.jobs == 50 and result.next_fire_at == NOW + 150 * S
    assert [j.run_at for j in jobs()] == [NOW + i * S for i in range(150)]


def test_expires_counts_from_the_tick_and_drops_stale_ticks(scheduler):
    schedule(catch_up="all", expires_seconds=25.0)
    scheduler.run_once(NOW + 60 * S)
    assert [(j.run_at, j.expires_at) for j in jobs()] == [(NOW + s * S, NOW + (s + 25) * S) for s in (40, 50, 60)]
    assert "expired ticks dropped" in Schedule.objects.get().last_status


def test_unique_schedule_skips_while_the_previous_job_is_active_and_says_so(scheduler):
    schedule(unique=True)
    scheduler.run_once(NOW)
    result = scheduler.run_once(NOW + 10 * S)  # previous job still queued
    s = Schedule.objects.get()
    assert result.jobs == 0 and result.fired[0].status.startswith("skipped")
    assert s.next_fire_at == NOW + 20 * S and s.last_status.startswith("skipped")  # the tick still advanced
    first = jobs()[0]
    assert s.last_job_id == first.id and first.unique_key == "schedule:s"
    drain()
    scheduler.run_once(NOW + 20 * S)
    assert [j.run_at for j in jobs()] == [NOW, NOW + 20 * S]


def test_one_off_fires_once(scheduler):
    schedule(interval_seconds=None, at=NOW, next_fire_at=NOW)
    scheduler.run_once(NOW + S)
    scheduler.run_once(NOW + 2 * S)
    assert len(jobs()) == 1 and Schedule.objects.get().next_fire_at is None


def test_disabled_schedules_do_not_fire_and_unknown_jobs_are_reported(scheduler):
    schedule("off", enabled=False)
    # Written past save()'s validation with a tick (as a fixture restores one): its fire reports the error.
    Schedule.objects.bulk_create(
        [
            Schedule(
                name="ghost", job_name="tests.testapp.tasks.nope", interval_seconds=10, timezone="UTC", next_fire_at=NOW
            )
        ]
    )
    result = scheduler.run_once(NOW)
    assert result.jobs == 0 and [f.name for f in result.fired] == ["ghost"]
    ghost = Schedule.objects.get(name="ghost")
    assert "error" in ghost.last_status and "nope" in ghost.last_status
    assert ghost.next_fire_at == NOW + 10 * S  # it does not block the loop


def test_sync_writes_code_and_settings_definitions_and_disables_removed_ones(scheduler):
    result = scheduler.sync(NOW)
    assert {"testapp-rare", "testapp-settings"} <= set(result.created)
    rows = {s.name: s for s in Schedule.objects.all()}
    rare, from_settings = rows["testapp-rare"], rows["testapp-settings"]
    assert (rare.source, rare.cron, rare.timezone, rare.kwargs) == (
        "code",
        "0 4 29 2 *",
        "Europe/Paris",
        {"label": "rare"},
    )
    assert rare.next_fire_at == datetime(2024, 2, 29, 3, 0, tzinfo=UTC)  # 04:00 Paris, next leap day
    assert (from_settings.source, from_settings.timezone) == ("settings", "America/New_York")
    schedule("mine", source="admin")

    with override_settings(DJTASKS={"QUEUES": {"default": {}, "other": {}, "slow": {}}}):
        result = scheduler.sync(NOW + S)
    assert result.orphaned == ["testapp-settings"]
    from_settings.refresh_from_db()
    assert not from_settings.enabled and from_settings.orphaned
    assert Schedule.objects.get(name="mine").enabled

    result = scheduler.sync(NOW + 2 * S)  # the definition is back
    from_settings.refresh_from_db()
    assert from_settings.enabled and not from_settings.orphaned and result.updated


def test_run_now_enqueues_without_moving_the_schedule():
    s = schedule(next_fire_at=NOW + 60 * S)
    outcome = Scheduler.for_django().run_now(row_of(s), NOW)
    assert outcome.job_ids and jobs()[0].run_at == NOW
    s.refresh_from_db()
    assert s.next_fire_at == NOW + 60 * S and s.last_status == "run now: enqueued"


def test_two_schedulers_on_two_connections_one_tick_one_job():
    s = schedule()
    a, b = WorkerConnection(role="test-a"), WorkerConnection(role="test-b")
    try:
        first, second = Scheduler.for_connection(a), Scheduler.for_connection(b)
        # Both read the due tick before either fires it.
        row_a = first.store.schedule_due_many(now=NOW, limit=10)[0]
        row_b = second.store.schedule_due_many(now=NOW, limit=10)[0]
        # A claims the tick and holds its transaction open; B's compare-and-set must wait, then lose.
        outcome_b = []
        with a.connection.transaction():
            assert a.store.schedule_fire(
                id=s.id, due=NOW, next_fire_at=NOW + 10 * S, cron="", interval_seconds=10.0, at=None, timezone="UTC"
            )
            a.store.job_insert_periodic_many(now=NOW, jobs=first.jobs_for(row_a, [NOW]))
            racer = threading.Thread(target=lambda: outcome_b.append(second.fire(row_b, NOW)))
            racer.start()
            racer.join(0.5)
            assert racer.is_alive(), "B should be blocked on the row lock while A's transaction is open"
        racer.join(10)
        assert outcome_b == [None]
        assert len(jobs()) == 1
    finally:
        a.close()
        b.close()


def test_two_schedulers_racing_through_many_ticks_enqueue_each_exactly_once():
    schedule(interval_seconds=1.0, catch_up="all")
    connections = [WorkerConnection(role=f"test-race-{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    fired = Counter()

    def run(index):
        scheduler = Scheduler.for_connection(connections[index])
        for step in range(60):
            barrier.wait()
            result = scheduler.run_once(NOW + step * S)
            fired[index] += result.jobs

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for conn in connections:
        conn.close()
    per_tick = Counter(j.run_at for j in jobs())
    assert per_tick == Counter({NOW + i * S: 1 for i in range(60)})
    assert sum(fired.values()) == 60
