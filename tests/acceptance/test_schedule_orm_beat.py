"""Schedules made through the ORM while ``runbeat`` processes run fire exactly once per tick."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from djtasks.models import Schedule
from tests.acceptance.test_runbeat import TICK, manage, ticks_of  # noqa: F401 - manage is a fixture
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]
S = timedelta(seconds=1)


def assert_every_second_once(label: str, at_least: int) -> None:
    per_tick = ticks_of(label)
    ticks = sorted(per_tick)
    assert max(per_tick.values()) == 1, [t for t, n in per_tick.items() if n > 1]  # exactly once
    assert ticks == [ticks[0] + i * S for i in range(len(ticks))], ticks  # none missing in between
    assert len(ticks) >= at_least, ticks


def test_schedules_created_updated_and_bulk_created_through_the_orm_fire_once_per_tick(manage):  # noqa: F811
    beats = [manage("runbeat"), manage("runbeat")]
    wait_until(lambda: all("beat: synced schedules" in b.log for b in beats), timeout=60, message="schedulers up")
    created = Schedule.objects.create(
        name="orm-create", job_name=TICK, interval_seconds=1, timezone="UTC", kwargs={"label": "orm-create"}
    )
    assert created.next_fire_at is not None  # planned by save()
    hourly = Schedule.objects.create(
        name="orm-update", job_name=TICK, interval_seconds=3600, timezone="UTC", kwargs={"label": "orm-update"}
    )
    Schedule.objects.filter(pk=hourly.pk).update(interval_seconds=1)  # past save(): the schedulers re-plan it
    Schedule.objects.bulk_create(
        [Schedule(name="orm-bulk", job_name=TICK, interval_seconds=1, timezone="UTC", kwargs={"label": "orm-bulk"})]
    )
    Schedule.objects.bulk_create(  # an hour that does not exist, written past validation: disabled, logged
        [Schedule(name="orm-bad", job_name=TICK, cron="0 25 * * *", timezone="UTC", kwargs={"label": "orm-bad"})]
    )
    wait_until(
        lambda: all(ticks_of(label) for label in ("orm-create", "orm-update", "orm-bulk")),
        timeout=30,
        message="the first tick of each",
    )
    time.sleep(6)
    stop_at = timezone.now()
    assert [b.stop(timeout=30) for b in beats] == [0, 0]
    for label in ("orm-create", "orm-update", "orm-bulk"):
        assert_every_second_once(label, at_least=5)
        assert max(ticks_of(label)) >= stop_at - 4 * S  # still firing when stopped
    bad = Schedule.objects.get(name="orm-bad")
    assert not bad.enabled and bad.last_status.startswith("disabled: cron: invalid cron expression")
    assert not ticks_of("orm-bad")
    assert any("'orm-bad' cannot fire" in b.log for b in beats)
