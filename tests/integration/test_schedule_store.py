"""One test (at least) per schedule query, against the real database."""

from __future__ import annotations

import select
from datetime import UTC, datetime, timedelta

import pytest

from djtasks.ids import uuid7
from djtasks.models import Job, Schedule
from djtasks.worker.db import WorkerConnection
from tests.conftest import make_schedule

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def definition(name="s", **overrides):
    row = {
        "name": name,
        "job_name": "tests.testapp.tasks.tick",
        "cron": "",
        "interval_seconds": 60.0,
        "at": None,
        "timezone": "UTC",
        "args": "[]",
        "kwargs": "{}",
        "queue": "",
        "priority": None,
        "next_fire_at": NOW + timedelta(seconds=60),
        "source": "code",
        "catch_up": "skip",
        "expires_seconds": None,
        "unique": False,
    }
    row.update(overrides)
    return row


def schedule(name="s", **fields):
    return make_schedule(name, **{"next_fire_at": NOW, **fields})


def periodic_job(**overrides):
    row = {
        "id": uuid7(),
        "name": "tests.testapp.tasks.tick",
        "queue": "default",
        "priority": 0,
        "args": "[]",
        "kwargs": "{}",
        "run_at": NOW,
        "expires_at": None,
        "max_attempts": 1,
        "unique_key": None,
    }
    row.update(overrides)
    return row


def test_schedule_sync_many_inserts_then_keeps_next_fire_at_unless_the_timing_changes(store):
    created = store.schedule_sync_many(schedules=[definition("a"), definition("b", source="settings")])
    assert created == {"a": True, "b": True}
    a = Schedule.objects.get(name="a")
    assert (a.enabled, a.source, a.next_fire_at, a.interval_seconds) == (True, "code", NOW + timedelta(seconds=60), 60)

    # restart with the same timing, new arguments and a later `now`: the pending tick is kept
    later = NOW + timedelta(seconds=30)
    created = store.schedule_sync_many(schedules=[definition("a", kwargs='{"x": 1}', next_fire_at=later)])
    a.refresh_from_db()
    assert created == {"a": False} and a.next_fire_at == NOW + timedelta(seconds=60) and a.kwargs == {"x": 1}

    # a changed timing starts from the new next tick
    store.schedule_sync_many(schedules=[definition("a", interval_seconds=5.0, next_fire_at=later)])
    a.refresh_from_db()
    assert a.interval_seconds == 5 and a.next_fire_at == later

    # an operator's off switch survives a restart
    Schedule.objects.filter(name="a").update(enabled=False)
    store.schedule_sync_many(schedules=[definition("a", interval_seconds=5.0)])
    assert Schedule.objects.get(name="a").enabled is False


def test_schedule_orphan_many_disables_removed_definitions_and_resync_brings_them_back(store):
    store.schedule_sync_many(
        schedules=[definition("kept"), definition("gone"), definition("gone-s", source="settings")]
    )
    schedule("mine", source="admin")
    orphaned = store.schedule_orphan_many(keep=["kept"])
    assert orphaned == {"gone": "code", "gone-s": "settings"}
    gone = Schedule.objects.get(name="gone")
    assert (gone.enabled, gone.orphaned, gone.next_fire_at) == (False, True, None)
    assert gone.last_status == "disabled: no longer defined in code"
    assert Schedule.objects.get(name="mine").enabled and Schedule.objects.get(name="kept").enabled
    assert store.schedule_orphan_many(keep=["kept"]) == {}  # already done

    store.schedule_sync_many(schedules=[definition("gone", next_fire_at=NOW + timedelta(hours=1))])
    gone.refresh_from_db()
    assert (gone.enabled, gone.orphaned, gone.next_fire_at) == (True, False, NOW + timedelta(hours=1))


def test_schedule_due_many_returns_enabled_due_rows_oldest_first(store):
    schedule("late", next_fire_at=NOW - timedelta(seconds=5))
    schedule("now", next_fire_at=NOW)
    schedule("future", next_fire_at=NOW + timedelta(microseconds=1))
    schedule("off", next_fire_at=NOW - timedelta(seconds=9), enabled=False)
    schedule("done", next_fire_at=None, interval_seconds=None, at=NOW - timedelta(days=1), last_fire_at=NOW)
    rows = store.schedule_due_many(now=NOW, limit=10)
    assert [r["name"] for r in rows] == ["late", "now"]
    assert rows[0]["args"] == "[]" and rows[0]["interval_seconds"] == 10.0
    assert len(store.schedule_due_many(now=NOW, limit=1)) == 1


def test_schedule_fire_is_a_compare_and_set(store):
    s = schedule("cas")
    timing = {"cron": "", "interval_seconds": 10.0, "at": None, "timezone": "UTC"}
    later = NOW + timedelta(seconds=10)
    assert store.schedule_fire(id=s.id, due=NOW, next_fire_at=later, **timing) is True
    assert store.schedule_fire(id=s.id, due=NOW, next_fire_at=later, **timing) is False  # tick already fired
    # a tick read before an edit of the timing cannot fire on the old timing
    # (next_fire_at written with it: an update that leaves the tick has it cleared, see test_schedule_orm.py)
    Schedule.objects.filter(id=s.id).update(interval_seconds=20.0, next_fire_at=later)
    assert store.schedule_fire(id=s.id, due=later, next_fire_at=later + timedelta(seconds=10), **timing) is False
    timing["interval_seconds"] = 20.0
    Schedule.objects.filter(id=s.id).update(enabled=False)
    assert store.schedule_fire(id=s.id, due=later, next_fire_at=None, **timing) is False  # disabled
    Schedule.objects.filter(id=s.id).update(enabled=True, next_fire_at=later)
    assert store.schedule_fire(id=s.id, due=later, next_fire_at=None, **timing) is True
    assert Schedule.objects.get(id=s.id).next_fire_at is None


def test_job_insert_periodic_many_skips_a_unique_key_that_is_still_active(store):
    first = periodic_job(unique_key="schedule:u")
    plain = [periodic_job(run_at=NOW + timedelta(seconds=i)) for i in range(3)]
    assert store.job_insert_periodic_many(now=NOW, jobs=[first, *plain]) == [first["id"], *(j["id"] for j in plain)]
    again = periodic_job(unique_key="schedule:u")
    assert store.job_insert_periodic_many(now=NOW, jobs=[again]) == []
    Job.objects.filter(id=first["id"]).update(status="succeeded")
    assert store.job_insert_periodic_many(now=NOW, jobs=[again]) == [again["id"]]
    job = Job.objects.get(id=again["id"])
    assert (job.status, job.run_at, job.enqueued_at, job.unique_key) == ("queued", NOW, NOW, "schedule:u")


def test_schedule_record_fire_keeps_the_last_job_when_none_was_made(store):
    s = schedule("rec")
    job_id = uuid7()
    store.schedule_record_fire(id=s.id, fired_at=NOW, job_id=job_id, status="enqueued")
    store.schedule_record_fire(id=s.id, fired_at=NOW + timedelta(seconds=10), job_id=None, status="skipped")
    s.refresh_from_db()
    assert (s.last_fire_at, s.last_job_id, s.last_status) == (NOW + timedelta(seconds=10), job_id, "skipped")


def test_schedule_next_fire_at_is_the_earliest_enabled(store):
    assert store.schedule_next_fire_at() is None
    schedule("a", next_fire_at=NOW + timedelta(seconds=30))
    schedule("b", next_fire_at=NOW + timedelta(seconds=20))
    schedule("c", next_fire_at=NOW, enabled=False)
    assert store.schedule_next_fire_at() == NOW + timedelta(seconds=20)


def test_schedule_listen_receives_schedule_notify_on_commit(store):
    listener = WorkerConnection(role="test-listen")
    try:
        listener.store.schedule_listen()
        store.schedule_notify(name="edited")
        conn = listener.connection
        select.select([conn.fileno()], [], [], 5)
        received = [n.payload for n in conn.notifies(timeout=1, stop_after=1)]
        assert received == ["edited"]
    finally:
        listener.close()
