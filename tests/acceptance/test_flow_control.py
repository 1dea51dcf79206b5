"""Flow control with real ``runworker`` fleets: a fleet-wide concurrency limit, a rate limit, pause and resume.

The limits are set at run time on the test settings' queues (as an operator would), before the workers start
or while they run. Figures are printed (run with ``-s``) for the closing note; the bounds asserted come from
the limits, not from wall-clock speed, so a loaded machine slows these tests down without failing them.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import djtasks
from djtasks.models import Job, Worker
from djtasks.queues import set_queue_options
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance, pytest.mark.slow]

SAMPLE_S = 0.02
UNLIMITED_JOBS = 3000


def start_fleet(start_worker, fleets: int, processes: int, threads: int, queues: str = "default,other,slow") -> None:
    for _ in range(fleets):
        start_worker("--processes", str(processes), "--threads", str(threads), "--queues", queues)
    wait_until(
        lambda: Worker.objects.count() == fleets * processes, timeout=90, message=f"{fleets * processes} workers"
    )


def count(**filters) -> int:
    return Job.objects.filter(**filters).count()


def test_concurrency_3_across_three_runworkers(start_worker):
    """3 runworkers x 2 processes x 4 threads (24 threads) share a queue limited to 3 running jobs."""
    set_queue_options("slow", concurrency=3)
    jobs = 45
    tasks.record.bulk_delay([tasks.record.s(f"c-{i}", 0.2).set(queue="slow") for i in range(jobs)])
    start_fleet(start_worker, 3, 2, 4)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                samples.append(count(queue="slow", status="running"))
                time.sleep(SAMPLE_S)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wait_until(lambda: count(status="succeeded") == jobs, timeout=120, message=f"{jobs} jobs to succeed")
    finally:
        stop.set()
        sampler.join()
    busy = [s for s in samples if s]
    print(
        f"\nconcurrency 3: {len(samples)} samples, max {max(samples)} running, mean while busy {sum(busy) / len(busy):.2f}"
    )
    assert max(samples) <= 3, f"{max(samples)} jobs of a concurrency-3 queue ran at once"
    assert max(samples) == 3
    assert count(status="succeeded") == jobs and count(queue="slow", attempt=1) == jobs


def test_rate_limit_60_per_second_across_three_runworkers(start_worker):
    set_queue_options("other", rate_limit="60/s")
    jobs = 240
    tasks.add.bulk_delay([tasks.add.s(i, i).set(queue="other") for i in range(jobs)])
    start_fleet(start_worker, 3, 1, 4)
    wait_until(lambda: count(status="succeeded") == jobs, timeout=120, message=f"{jobs} jobs to succeed")
    # The limiter paces claims: claimed_at is the start it schedules (limited jobs are never claimed ahead, so
    # each starts at once after it); started_at adds each worker's own dispatch delay, which may bunch starts.
    starts = sorted(Job.objects.values_list("claimed_at", flat=True))
    window = timedelta(seconds=1)
    most, j = 0, 0
    for i, start in enumerate(starts):  # every window [t, t + 1 s) that begins at a start
        while starts[j] <= start - window:
            j += 1
        most = max(most, i - j + 1)
    span = (starts[-1] - starts[0]).total_seconds()
    mean = (len(starts) - 1) / span
    print(f"\nrate 60/s: {jobs} starts over {span:.2f} s: max {most} in any 1 s window, mean {mean:.1f}/s")
    assert most <= 60
    assert span >= (jobs - 60) / 60  # it could not have gone faster than the limit
    assert mean > 20  # spread out, but not crawling (3 workers on a loaded 2-core machine)


def test_paused_queue_starts_nothing_while_an_unlimited_one_drains_then_resumes(start_worker):
    start_fleet(start_worker, 1, 2, 4)
    # The unlimited queue's speed with nothing paused, as the yardstick.
    tasks.add.bulk_delay([(i, i) for i in range(UNLIMITED_JOBS)])
    began = time.monotonic()
    wait_until(lambda: count(status="succeeded") == UNLIMITED_JOBS, timeout=120, message="the unlimited queue alone")
    plain_s = time.monotonic() - began

    djtasks.pause_queue("slow")
    paused_at = time.monotonic()
    tasks.record.bulk_delay([tasks.record.s(f"p-{i}").set(queue="slow") for i in range(100)])
    tasks.add.bulk_delay([(i, i) for i in range(UNLIMITED_JOBS)])
    began = time.monotonic()
    wait_until(
        lambda: count(status="succeeded") == 2 * UNLIMITED_JOBS,
        timeout=120,
        message="the unlimited queue beside a paused one",
    )
    beside_paused_s = time.monotonic() - began
    print(
        f"\nunlimited queue, {UNLIMITED_JOBS} jobs: {plain_s:.2f} s alone, {beside_paused_s:.2f} s beside a paused queue"
    )
    assert beside_paused_s < plain_s * 2 + 1.0
    while time.monotonic() < paused_at + 5:
        assert count(queue="slow", status="queued") == 100, "a job of the paused queue started"
        time.sleep(0.1)
    assert count(queue="slow", status="queued") == 100

    djtasks.resume_queue("slow")
    wait_until(lambda: count(queue="slow", status="succeeded") == 100, timeout=60, message="the resumed queue")
    assert count(status="succeeded") == 2 * UNLIMITED_JOBS + 100
