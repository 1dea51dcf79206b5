"""The beat loop in a thread, as ``runworker --beat`` runs it: wakes on time, survives losing its connection."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from djtasks.beat import run_in_thread
from djtasks.cron import Timing, first_fire
from djtasks.models import Job, Schedule
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_thread_fires_on_time_reconnects_and_stops_promptly(caplog):
    first = first_fire(Timing.make(every=1), timezone.now())
    Schedule.objects.create(
        name="loop",
        job_name="tests.testapp.tasks.tick",
        interval_seconds=1,
        timezone="UTC",
        catch_up="all",
        next_fire_at=first,
    )
    # Only this schedule's jobs: the example site's schedules (demo-heartbeat, every 30 s) fire too.
    ticks_of = Job.objects.filter(name="tests.testapp.tasks.tick")
    beat, thread = run_in_thread(reload_interval=0.5)
    try:
        wait_until(lambda: ticks_of.count() >= 2, timeout=10, message="two ticks")
        # The first tick may already be due when the thread starts; the later ones show whether it sleeps
        # until the tick (not a poll interval).
        lateness = [(j.enqueued_at - j.run_at).total_seconds() for j in ticks_of.order_by("run_at")][1:]
        assert max(lateness) < 0.5, lateness
        with connection.cursor() as cursor:  # the database drops the scheduler's connection
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'djtasks-beat'"
            )
        count = ticks_of.count()
        wait_until(lambda: ticks_of.count() >= count + 2, timeout=10, message="ticks after the reconnect")
    finally:
        started = time.monotonic()
        beat.stop()
        thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert "beat lost the database" in caplog.text
    ticks = sorted(Counter(ticks_of.values_list("run_at", flat=True)).items())
    assert [t for t, _ in ticks] == [first + timedelta(seconds=i) for i in range(len(ticks))]  # none missing
    assert {n for _, n in ticks} == {1}
