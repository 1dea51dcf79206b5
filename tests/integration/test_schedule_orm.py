"""Schedules made in code (the ORM, ``add_schedule``, ``QuerySet.update``, ``bulk_create``) fire like admin ones."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from djtasks.cron import Timing, first_fire
from djtasks.maintenance.scheduler import Scheduler
from djtasks.models import Job, Schedule
from djtasks.periodic import add_schedule
from djtasks.worker.db import WorkerConnection
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

TICK = "tests.testapp.tasks.tick"
NOW = datetime(2024, 1, 1, 12, 0, 3, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.fixture
def scheduler():
    db = WorkerConnection(role="test-scheduler")
    yield Scheduler.for_connection(db)
    db.close()


def test_objects_create_validates_and_plans_the_next_tick():
    before = datetime.now(UTC)
    s = Schedule.objects.create(name="orm", job_name=TICK, cron="*/5 * * * *", timezone="Europe/Paris")
    assert s.next_fire_at is not None and s.next_fire_at > before
    assert s.next_fire_at == first_fire(Timing.make(cron="*/5 * * * *", tz="Europe/Paris"), s.next_fire_at - 300 * S)
    assert Schedule.objects.get(name="orm").next_fire_at == s.next_fire_at


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "out of range"),
        ({"cron": "* * *"}, "cron", "3 field(s); expected 5"),
        ({"interval_seconds": 10, "job_name": "tests.testapp.tasks.tik"}, "job_name", "Did you mean"),
        ({"interval_seconds": 10, "queue": "nope"}, "queue", "Unknown queue 'nope'"),
        ({"interval_seconds": 10, "timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
        ({"interval_seconds": 10, "cron": "* * * * *"}, "__all__", "exactly one"),
        ({"interval_seconds": 0.5}, "__all__", "1"),
        ({"interval_seconds": 10, "args": {"a": 1}}, "args", "JSON list"),
    ],
)
def test_a_bad_definition_is_refused_at_save_and_nothing_is_written(fields, field, words):
    values = {"job_name": TICK, "timezone": "UTC", **fields}
    with pytest.raises(ValidationError) as caught:
        Schedule.objects.create(name="bad", **values)
    assert field in caught.value.message_dict, caught.value.message_dict
    assert words.lower() in " ".join(caught.value.message_dict[field]).lower()
    assert not Schedule.objects.filter(name="bad").exists()


def test_save_replans_when_retimed_and_keeps_the_tick_otherwise():
    s = Schedule.objects.create(name="orm", job_name=TICK, interval_seconds=3600, timezone="UTC")
    first = s.next_fire_at
    s = Schedule.objects.get(name="orm")
    s.kwargs = {"label": "changed"}
    s.save()
    assert Schedule.objects.get(name="orm").next_fire_at == first  # arguments only: same tick
    s.interval_seconds = 60
    s.save()
    replanned = Schedule.objects.get(name="orm").next_fire_at
    assert replanned < first and replanned.second == 0  # re-timed: the next whole minute, not the next hour


def test_a_full_save_does_not_write_back_a_tick_a_scheduler_moved_meanwhile():
    s = Schedule.objects.create(name="orm", job_name=TICK, interval_seconds=60, timezone="UTC")
    moved = s.next_fire_at + 60 * S
    Schedule.objects.filter(pk=s.pk).update(next_fire_at=moved, last_status="enqueued")  # a scheduler fired
    s.kwargs = {"label": "x"}
    s.save()
    row = Schedule.objects.get(pk=s.pk)
    assert (row.next_fire_at, row.last_status, row.kwargs) == (moved, "enqueued", {"label": "x"})


def test_switching_a_schedule_on_again_plans_from_now():
    s = Schedule.objects.create(name="orm", job_name=TICK, interval_seconds=10, timezone="UTC", enabled=False)
    assert s.next_fire_at is None
    s.enabled = True
    s.save()
    assert s.next_fire_at is not None and Schedule.objects.get(pk=s.pk).next_fire_at == s.next_fire_at


def test_rows_written_past_save_are_planned_by_the_scheduler(scheduler):
    Schedule.objects.bulk_create([Schedule(name="bulk", job_name=TICK, interval_seconds=10, timezone="UTC")])
    assert Schedule.objects.get(name="bulk").next_fire_at is None
    result = scheduler.run_once(NOW)
    assert result.planned == ["bulk"] and result.fired == []
    assert Schedule.objects.get(name="bulk").next_fire_at == datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC)
    # next pass: planned already, nothing to do; at the tick it fires once
    assert scheduler.run_once(NOW).planned == []
    fired = scheduler.run_once(NOW + 7 * S).fired
    assert [f.name for f in fired] == ["bulk"] and Job.objects.filter(name=TICK).count() == 1


def test_queryset_update_of_the_timing_is_replanned_at_the_next_pass(scheduler):
    s = Schedule.objects.create(name="orm", job_name=TICK, interval_seconds=3600, timezone="UTC")
    Schedule.objects.filter(pk=s.pk).update(interval_seconds=10)
    assert Schedule.objects.get(pk=s.pk).next_fire_at is None  # the trigger cleared the stale tick
    assert scheduler.run_once(NOW).planned == ["orm"]
    assert Schedule.objects.get(pk=s.pk).next_fire_at == datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC)
    # an update that leaves the timing alone keeps the tick
    Schedule.objects.filter(pk=s.pk).update(kwargs={"label": "x"})
    assert Schedule.objects.get(pk=s.pk).next_fire_at == datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC)


def test_a_bad_definition_written_past_save_is_disabled_with_a_logged_reason(scheduler, caplog):
    s = Schedule.objects.create(name="cronned", job_name=TICK, cron="0 * * * *", timezone="UTC")
    Schedule.objects.create(name="ghosted", job_name=TICK, interval_seconds=10, timezone="UTC")
    Schedule.objects.filter(pk=s.pk).update(cron="0 25 * * *")  # hour 25
    Schedule.objects.filter(name="ghosted").update(job_name="tests.testapp.tasks.gone")
    with caplog.at_level(logging.ERROR, logger="djtasks.beat"):
        result = scheduler.run_once(NOW)
    assert sorted(result.disabled) == ["cronned", "ghosted"] and result.fired == []
    rows = {r.name: r for r in Schedule.objects.all()}
    assert not rows["cronned"].enabled and "'0 25 * * *'" in rows["cronned"].last_status
    assert rows["cronned"].last_status.startswith("disabled:")
    assert not rows["ghosted"].enabled and "tests.testapp.tasks.gone" in rows["ghosted"].last_status
    assert "'cronned' cannot fire" in caplog.text and "'ghosted' cannot fire" in caplog.text
    assert scheduler.run_once(NOW + 3600 * S).disabled == []  # said once, not every pass


def test_loaddata_raw_fixture_without_a_tick_is_planned(scheduler, tmp_path):
    fixture = tmp_path / "schedules.json"
    fields = {"name": "fixture", "job_name": TICK, "interval_seconds": 10, "timezone": "UTC", "enabled": True}
    fixture.write_text(json.dumps([{"model": "djtasks.schedule", "pk": 900, "fields": fields}]))
    call_command("loaddata", str(fixture), verbosity=0)
    assert Schedule.objects.get(name="fixture").next_fire_at is None
    assert scheduler.run_once(NOW).planned == ["fixture"]


def test_add_schedule_creates_then_updates_by_name():
    s = add_schedule("nightly", tasks.tick, cron="0 3 * * *", tz="Europe/Paris", kwargs={"label": "n"})
    assert (s.source, s.cron, s.timezone, s.kwargs, s.enabled) == (
        "admin",
        "0 3 * * *",
        "Europe/Paris",
        {"label": "n"},
        True,
    )
    first = s.next_fire_at
    assert first is not None and first.astimezone(UTC).hour in (1, 2)  # 03:00 Paris
    again = add_schedule("nightly", TICK, cron="0 3 * * *", tz="Europe/Paris", kwargs={"label": "m"})
    assert again.pk == s.pk and again.next_fire_at == first and again.kwargs == {"label": "m"}
    moved = add_schedule("nightly", TICK, every=timedelta(minutes=1))
    assert moved.interval_seconds == 60 and moved.cron == "" and moved.next_fire_at < first
    assert Schedule.objects.count() == 1


def test_add_schedule_refuses_bad_input_and_code_defined_schedules():
    with pytest.raises(ValueError, match="exactly one"):
        add_schedule("x", TICK)
    with pytest.raises(ValidationError, match="No job named"):
        add_schedule("x", "tests.testapp.tasks.missing", every=10)
    with pytest.raises(ValidationError, match="Unknown queue"):
        add_schedule("x", TICK, every=10, queue="nowhere")
    Scheduler.for_django().sync(NOW)
    with pytest.raises(ValueError, match="defined in code"):
        add_schedule("testapp-rare", TICK, every=10)
    assert not Schedule.objects.filter(name="x").exists()


def test_a_schedule_whose_job_is_gone_can_be_switched_off_but_not_on():
    Schedule.objects.bulk_create(
        [Schedule(name="stale", job_name="gone.tasks.job", interval_seconds=10, timezone="UTC")]
    )
    stale = Schedule.objects.get(name="stale")
    stale.enabled = False
    stale.save(update_fields=["enabled"])
    assert not Schedule.objects.get(name="stale").enabled
    stale.enabled = True
    with pytest.raises(ValidationError, match=r"No job named 'gone\.tasks\.job'"):
        stale.save()
    assert not Schedule.objects.get(name="stale").enabled


def test_the_admin_enable_action_reports_a_schedule_it_cannot_enable(admin_client):
    from django.urls import reverse

    Schedule.objects.bulk_create(
        [Schedule(name="stale", job_name="gone.tasks.job", interval_seconds=10, timezone="UTC", enabled=False)]
    )
    stale = Schedule.objects.get(name="stale")
    response = admin_client.post(
        reverse("admin:djtasks_schedule_changelist"),
        {"action": "enable_schedules", "_selected_action": [stale.pk]},
        follow=True,
    )
    said = [str(m) for m in response.context["messages"]]
    assert said == ["stale: left disabled: No job named 'gone.tasks.job' is registered.", "Enabled 0 schedule(s)."]
    assert not Schedule.objects.get(name="stale").enabled


def test_a_one_off_that_fired_is_done_unless_moved_to_a_later_time(scheduler):
    at = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    Schedule.objects.create(name="once", job_name=TICK, at=at, timezone="UTC")
    assert [f.name for f in scheduler.run_once(NOW).fired] == ["once"]
    assert Schedule.objects.get(name="once").next_fire_at is None
    assert scheduler.run_once(NOW + 60 * S).planned == []  # done: not planned again
    Schedule.objects.filter(name="once").update(at=at + 3600 * S)
    assert scheduler.run_once(NOW + 60 * S).planned == ["once"]
    assert Schedule.objects.get(name="once").next_fire_at == at + 3600 * S
