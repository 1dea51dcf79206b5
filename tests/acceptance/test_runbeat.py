"""Real ``manage.py runbeat`` / ``runworker --beat`` subprocesses firing periodic schedules."""

from __future__ import annotations

import re
import signal
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djtasks.cron import Timing, first_fire
from djtasks.models import Job, Schedule
from tests.conftest import ManagedProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]

TICK = "tests.testapp.tasks.tick"
S = timedelta(seconds=1)


@pytest.fixture
def manage(tmp_path):
    started: list[ManagedProcess] = []

    def start(*args: str) -> ManagedProcess:
        process = ManagedProcess(tmp_path, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(timeout=30)
        sys.stderr.write(f"--- {process.log_path.name}\n{process.log[-4000:]}\n")


def ticks_of(schedule_kwargs_label: str) -> Counter:
    """Jobs per tick (a periodic job's run_at is its tick) for the schedule whose jobs carry this label."""
    return Counter(Job.objects.filter(name=TICK, kwargs__label=schedule_kwargs_label).values_list("run_at", flat=True))


@pytest.mark.slow
def test_three_runbeats_and_a_worker_beat_enqueue_every_tick_exactly_once(manage):
    now = timezone.now()
    first = first_fire(Timing.make(every=1), now)
    Schedule.objects.create(
        name="every-second",
        job_name=TICK,
        interval_seconds=1,
        catch_up="all",  # ticks that fall due while the processes start are enqueued too: none may be missing
        kwargs={"label": "every-second"},
        next_fire_at=first,
        source="admin",
    )
    beats = [manage("runbeat") for _ in range(3)]
    beats.append(manage("runworker", "--beat", "--processes", "1", "--threads", "2"))
    wait_until(lambda: all("beat: synced schedules" in b.log for b in beats), timeout=60, message="four schedulers up")
    all_up = timezone.now()
    time.sleep(22)
    stop_at = timezone.now()
    for index, beat in enumerate(beats):  # Ctrl-C to one, SIGTERM to the others, all at once
        beat.proc.send_signal(signal.SIGINT if index == 0 else signal.SIGTERM)
    assert [beat.stop(None) for beat in beats] == [0, 0, 0, 0]

    per_tick = ticks_of("every-second")
    ticks = sorted(per_tick)
    # Exactly once: no tick has two jobs.
    assert max(per_tick.values()) == 1, [t for t, n in per_tick.items() if n > 1]
    # None missing: every whole second from the first tick to the last has its job ...
    assert ticks[0] == first and ticks == [first + i * S for i in range(len(ticks))]
    # ... the ticks kept coming until the stop signal (the last one is at most a few seconds before it: the
    # tick in flight, plus slack for a loaded machine) and none fired after the schedulers stopped,
    assert stop_at - 3 * S <= ticks[-1] <= stop_at + S
    # ... and at least 20 of them fell due while all four schedulers were running.
    assert sum(all_up <= t <= stop_at for t in ticks) >= 20

    winners = Counter()
    for index, beat in enumerate(beats):
        winners[index] = len(re.findall(r"beat: 'every-second' tick", beat.log))
    assert sum(winners.values()) <= len(ticks)  # a fire can cover several ticks (the start-up backlog)
    late = sorted(
        (j.enqueued_at - j.run_at).total_seconds()
        for j in Job.objects.filter(name=TICK, kwargs__label="every-second", run_at__gte=all_up)
    )
    sys.stderr.write(
        f"fires won per scheduler: {dict(winners)}; ticks: {len(ticks)}; enqueued after the tick: "
        f"median {late[len(late) // 2] * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms\n"
    )


def test_a_schedule_edited_in_the_admin_applies_without_restarting_runbeat(manage):
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    form = {
        "name": "edited",
        "job_name": TICK,
        "cron": "",
        "interval_seconds": "3600",
        "at_0": "",
        "at_1": "",
        "timezone": "Europe/Paris",
        "args": "[]",
        "kwargs": '{"label": "edited"}',
        "queue": "",
        "priority": "",
        "catch_up": "skip",
        "expires_seconds": "",
        "enabled": "on",
    }
    response = client.post(reverse("admin:djtasks_schedule_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = Schedule.objects.get(name="edited")
    assert schedule.source == "admin" and schedule.next_fire_at > timezone.now() + timedelta(minutes=1)

    beat = manage("runbeat")
    wait_until(lambda: "beat: synced schedules" in beat.log, timeout=60, message="runbeat up")
    time.sleep(0.5)
    assert not ticks_of("edited")

    change_url = reverse("admin:djtasks_schedule_change", args=[schedule.pk])
    posted_at = timezone.now()
    response = client.post(change_url, {**form, "interval_seconds": "1"})
    assert response.status_code == 302, response.content.decode()[:3000]
    wait_until(lambda: len(ticks_of("edited")) >= 3, timeout=15, message="jobs on the new interval")
    # The old timing's next tick was an hour away: these come from the edit, applied by the running runbeat.
    first_tick = min(ticks_of("edited"))
    assert posted_at < first_tick <= posted_at + 3 * S
    assert beat.proc.poll() is None and beat.log.count("beat: started") == 1

    # a bad cron is refused by the form with a clear message, and the schedule keeps running
    response = client.post(change_url, {**form, "interval_seconds": "", "cron": "*/5 * * *"})
    assert response.status_code == 200 and "expected 5" in response.content.decode()

    response = client.post(change_url, {**form, "interval_seconds": "1", "enabled": ""})  # unticked: disabled
    assert response.status_code == 302
    time.sleep(0.5)  # a tick in flight when the edit committed
    count = len(ticks_of("edited"))
    time.sleep(2.5)
    assert len(ticks_of("edited")) == count, "a disabled schedule kept firing"
    assert beat.stop() == 0
