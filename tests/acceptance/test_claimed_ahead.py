"""A worker process that dies holding jobs it had only claimed ahead: only the jobs it had started lose an
attempt. Real ``runworker`` subprocesses, real SIGKILLs; ``max_attempts=1`` everywhere, so a wrongly charged
job would end ``failed``."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

import pytest
from django.db import transaction

from djtasks.models import Job, Worker
from tests.acceptance.support import side_effects, statuses, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]

THREADS = 4
SLOW_S = 4.0  # long enough to be killed while running, even on a loaded machine
FAST_JOBS = 100
WARM_UP_JOBS = 200  # teaches the process that `touch` is fast, so it claims far ahead


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


def hold_slow_and_fast(start_worker, path):
    """A runworker with one worker process whose threads run 2 s jobs while it holds fast jobs claimed ahead;
    returns the runworker, the slow ids and the fast ids."""
    worker = start_worker("--processes", "1", "--threads", str(THREADS))
    wait_until(lambda: Worker.objects.count() == 1, timeout=60, message="the worker process")
    tasks.touch.bulk_delay([(str(path.with_suffix(".warm")),) for _ in range(WARM_UP_JOBS)])
    wait_until(lambda: statuses()["succeeded"] == WARM_UP_JOBS, timeout=60, message="the warm-up jobs")
    with transaction.atomic():  # one commit, one wake-up: the slow jobs come first in the claim's order
        slow = tasks.touch.bulk_delay([(str(path), SLOW_S) for _ in range(THREADS)])
        fast = tasks.touch.bulk_delay([(str(path),) for _ in range(FAST_JOBS)])
    slow_ids, fast_ids = {r.id for r in slow}, {r.id for r in fast}

    def held() -> bool:
        mine = Job.objects.filter(id__in=slow_ids | fast_ids)
        started = set(mine.filter(status="running", started_at__isnull=False).values_list("id", flat=True))
        ahead = mine.filter(status="running", started_at__isnull=True).count()
        # how many it claims ahead depends on how fast `touch` ran in the warm-up: up to 100, fewer on a
        # loaded machine; any number shows the point
        return started == slow_ids and ahead > 0

    # the slow ones have started (their start marks are in the database) and fast ones wait behind them
    wait_until(held, timeout=30, message="4 slow jobs running and fast jobs claimed ahead")
    return worker, slow_ids, fast_ids


def assert_only_started_jobs_charged(path, slow_ids, fast_ids) -> Counter:
    wait_until(
        lambda: statuses()["succeeded"] == WARM_UP_JOBS + len(fast_ids) and statuses()["running"] == 0,
        timeout=90,
        message="the fast jobs to run elsewhere",
    )
    for job in Job.objects.filter(id__in=slow_ids):  # started, then lost: the attempt counts (and was the last)
        assert (job.status, job.attempt) == ("failed", 1), (job.id, job.status, job.attempt, job.errors)
        assert [e["type"] for e in job.errors] == ["djtasks.exceptions.WorkerLost"]
    fast = Job.objects.filter(id__in=fast_ids)
    assert Counter(fast.values_list("status", flat=True)) == Counter({"succeeded": len(fast_ids)})
    assert set(fast.values_list("attempt", flat=True)) == {1} and not any(fast.values_list("errors", flat=True))
    effects = side_effects(path)
    assert set(effects) == {str(i) for i in fast_ids} and set(effects.values()) == {1}, "each fast job ran once"
    return effects


def test_sigkill_of_a_worker_process_charges_only_the_jobs_it_had_started(start_worker, tmp_path):
    path = tmp_path / "effects.log"
    worker, slow_ids, fast_ids = hold_slow_and_fast(start_worker, path)
    ahead = Job.objects.filter(id__in=fast_ids, status="running").count()
    assert ahead > 0
    (child,) = worker_children(worker.proc.pid)
    os.kill(child, signal.SIGKILL)  # its supervisor rescues its jobs and starts a replacement
    assert_only_started_jobs_charged(path, slow_ids, fast_ids)
    assert "never started and handed back" in worker.log
    report(f"worker process SIGKILLed holding {len(slow_ids)} started and {ahead} claimed-ahead jobs: charged 4")
    assert worker.stop() == 0


def test_sigkill_of_a_whole_runworker_charges_only_the_jobs_it_had_started(start_worker, tmp_path):
    path = tmp_path / "effects.log"
    worker, slow_ids, fast_ids = hold_slow_and_fast(start_worker, path)
    ahead = Job.objects.filter(id__in=fast_ids, status="running").count()
    os.killpg(worker.proc.pid, signal.SIGKILL)  # the supervisor and its worker process at once
    worker.proc.wait(10)
    time.sleep(0.5)
    assert Job.objects.filter(id__in=slow_ids | fast_ids, status="running").count() == len(slow_ids) + ahead
    rescuer = start_worker("--processes", "1", "--threads", str(THREADS))  # its rescuer finds the dead worker
    assert_only_started_jobs_charged(path, slow_ids, fast_ids)
    assert "never started and handed back" in rescuer.log
    report(f"runworker SIGKILLed holding {len(slow_ids)} started and {ahead} claimed-ahead jobs: charged 4")
    assert rescuer.stop() == 0


def test_a_warm_stop_hands_back_the_jobs_claimed_ahead_at_once(start_worker, tmp_path):
    path = tmp_path / "effects.log"
    worker, slow_ids, fast_ids = hold_slow_and_fast(start_worker, path)
    ahead = set(Job.objects.filter(id__in=fast_ids, status="running").values_list("id", flat=True))
    worker.signal(signal.SIGTERM)
    # back in the queue, uncharged, while the slow jobs still run (they have seconds left)
    wait_until(
        lambda: Job.objects.filter(id__in=ahead, status="queued", attempt=0, worker_id=None).count() == len(ahead),
        timeout=SLOW_S / 2,
        message="the jobs claimed ahead to be handed back",
    )
    assert Job.objects.filter(id__in=slow_ids, status="running").count() == len(slow_ids)
    assert worker.wait(60) == 0
    assert Counter(Job.objects.filter(id__in=slow_ids).values_list("status", flat=True)) == {"succeeded": 4}
    assert not side_effects(path).keys() & {str(i) for i in fast_ids}, "no job claimed ahead ran"
