"""The schedules admin through Django's test client: list, form validation, actions and permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from djtasks.models import Job, Schedule

pytestmark = pytest.mark.django_db  # one connection: each test rolls back

TICK = "tests.testapp.tasks.tick"
CHANGELIST = "admin:djtasks_schedule_changelist"


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def form(**overrides):
    data = {
        "name": "nightly",
        "job_name": TICK,
        "cron": "0 3 * * *",
        "interval_seconds": "",
        "at_0": "",
        "at_1": "",
        "timezone": "Europe/Paris",
        "args": "[]",
        "kwargs": "{}",
        "queue": "",
        "priority": "",
        "catch_up": "skip",
        "expires_seconds": "",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def errors_of(response) -> str:
    assert response.status_code == 200, "the form should have been refused"
    return response.content.decode()


def test_add_computes_next_fire_in_the_schedule_zone_and_the_list_shows_it(admin_client):
    response = admin_client.post(reverse("admin:djtasks_schedule_add"), form())
    assert response.status_code == 302
    schedule = Schedule.objects.get(name="nightly")
    assert schedule.source == "admin" and schedule.cron == "0 3 * * *"
    local = schedule.next_fire_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (3, 0) and schedule.next_fire_at > timezone.now()
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "0 3 * * * (Europe/Paris)" in page and local.strftime("%Y-%m-%d 03:00:00 %Z") in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cron": "0 25 * * *"}, "invalid cron expression"),
        ({"cron": "0 3 * *"}, "expected 5"),
        ({"cron": "0 3 * * *", "interval_seconds": "60"}, "exactly one of"),
        ({"cron": ""}, "exactly one of"),
        ({"cron": "", "interval_seconds": "0.5"}, "at least 1"),
        ({"timezone": "Paris"}, "unknown time zone"),
        ({"job_name": "tests.testapp.tasks.tik"}, "Did you mean tests.testapp.tasks.tick"),
        ({"queue": "nowhere"}, "Unknown queue"),
        ({"args": '{"a": 1}'}, "must be a JSON list"),
        ({"priority": "500"}, "between -100 and 100"),
    ],
)
def test_the_form_rejects_bad_input_with_a_clear_message(admin_client, overrides, message):
    page = errors_of(admin_client.post(reverse("admin:djtasks_schedule_add"), form(**overrides)))
    blank = admin_client.get(reverse("admin:djtasks_schedule_add")).content.decode()  # help texts say some too
    said = page.replace("&#x27;", "'").count(message) - blank.count(message)
    assert said == 1  # said once: by the form or by the model, not both
    assert not Schedule.objects.exists()


def test_editing_only_writes_the_changed_fields(admin_client):
    admin_client.post(reverse("admin:djtasks_schedule_add"), form())
    schedule = Schedule.objects.get()
    url = reverse("admin:djtasks_schedule_change", args=[schedule.pk])
    # meanwhile a scheduler fires and moves next_fire_at on
    moved = schedule.next_fire_at + timedelta(days=1)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=moved, last_status="enqueued")
    assert admin_client.post(url, form(kwargs='{"x": 1}')).status_code == 302
    schedule.refresh_from_db()
    assert schedule.kwargs == {"x": 1} and schedule.next_fire_at == moved and schedule.last_status == "enqueued"
    # a new timing restarts from the next tick of the new timing
    assert admin_client.post(url, form(cron="", interval_seconds="30")).status_code == 302
    schedule.refresh_from_db()
    assert schedule.interval_seconds == 30 and schedule.next_fire_at <= timezone.now() + timedelta(seconds=30)


def test_code_schedules_are_read_only_except_the_switch(admin_client):
    Schedule.objects.create(
        name="from-code", job_name=TICK, cron="0 4 * * *", timezone="UTC", source="code", next_fire_at=None
    )
    schedule = Schedule.objects.get()
    url = reverse("admin:djtasks_schedule_change", args=[schedule.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="cron"' not in page and 'name="enabled"' in page
    admin_client.post(url, {"name": "renamed", "cron": "* * * * *"})  # `enabled` unticked
    schedule.refresh_from_db()
    assert (schedule.name, schedule.cron, schedule.enabled) == ("from-code", "0 4 * * *", False)


def test_actions_enable_disable_and_run_now(admin_client):
    past = datetime(2024, 1, 1, tzinfo=UTC)
    a = Schedule.objects.create(name="a", job_name=TICK, interval_seconds=60, timezone="UTC", next_fire_at=past)
    b = Schedule.objects.create(name="b", job_name=TICK, interval_seconds=60, timezone="UTC", unique=True)
    url = reverse(CHANGELIST)
    admin_client.post(url, {"action": "disable_schedules", "_selected_action": [a.pk, b.pk]})
    assert not Schedule.objects.filter(enabled=True).exists()
    admin_client.post(url, {"action": "enable_schedules", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.enabled and a.next_fire_at > timezone.now()  # re-enabled from now: no burst of stale ticks

    response = admin_client.post(url, {"action": "run_now", "_selected_action": [b.pk]}, follow=True)
    assert "b: run now: enqueued" in response.content.decode().lower()
    job = Job.objects.get()
    b.refresh_from_db()
    assert (job.name, job.unique_key, b.last_job_id, b.last_status) == (TICK, "schedule:b", job.id, "run now: enqueued")
    response = admin_client.post(url, {"action": "run_now", "_selected_action": [b.pk]}, follow=True)
    assert "still active" in response.content.decode() and Job.objects.count() == 1  # unique: not twice
    assert "queued" in admin_client.get(url).content.decode()  # the last job's status is listed


def test_actions_need_the_change_permission(client):
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(user)
    schedule = Schedule.objects.create(name="a", job_name=TICK, interval_seconds=60, timezone="UTC")
    url = reverse(CHANGELIST)
    page = client.get(url).content.decode()
    assert "run_now" not in page and "disable_schedules" not in page
    client.post(url, {"action": "run_now", "_selected_action": [schedule.pk]})
    client.post(url, {"action": "disable_schedules", "_selected_action": [schedule.pk]})
    assert not Job.objects.exists() and Schedule.objects.get().enabled


def test_switching_a_fired_one_off_back_on_does_not_fire_it_again(admin_client):
    at = datetime(2024, 1, 1, tzinfo=UTC)
    done = Schedule.objects.create(
        name="once", job_name=TICK, at=at, timezone="UTC", enabled=False, next_fire_at=None, last_fire_at=at
    )
    admin_client.post(reverse(CHANGELIST), {"action": "enable_schedules", "_selected_action": [done.pk]})
    done.refresh_from_db()
    assert done.enabled and done.next_fire_at is None
