"""Worker processes that die: killed, crashed by their own job, orphaned; and long jobs that must not be
rescued. Real ``runworker`` subprocesses, real signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

import pytest
from django.conf import settings
from django.utils import timezone

from djtasks.models import Job, Worker
from tests.acceptance.support import alive, statuses, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]

WORKER_TIMEOUT_S = settings.DJTASKS["WORKER_TIMEOUT"]
RESCUE_INTERVAL_S = settings.DJTASKS.get("RESCUE_INTERVAL") or settings.DJTASKS["HEARTBEAT_INTERVAL"]
HEARTBEAT_INTERVAL_S = settings.DJTASKS["HEARTBEAT_INTERVAL"]
SLACK_S = 3.0  # claim, process start-up and a busy shared machine


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


def second_run_started(label: str) -> bool:
    return Execution.objects.filter(label=label, attempt=2).exists()


def assert_duplicates_only_after_worker_loss() -> int:
    """Every job that ran more than once has a WorkerLost error per extra run; returns the duplicates."""
    runs = Counter(Execution.objects.values_list("job_id", flat=True))
    duplicates = 0
    for job in Job.objects.filter(id__in=[j for j, n in runs.items() if n > 1]):
        lost = sum(e["type"] == "djtasks.exceptions.WorkerLost" for e in job.errors)
        assert runs[job.id] - 1 <= lost, (job.id, runs[job.id], job.errors)
        duplicates += runs[job.id] - 1
    return duplicates


def test_sigkill_of_a_worker_process_mid_job_reruns_the_job_on_another(start_worker):
    worker = start_worker("--processes", "2", "--threads", "2")
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="two worker processes")
    victim_job = tasks.survive.delay("victim", sleep_first=60)  # max_attempts=3
    # others may share the killed process: with attempts to spare they are re-run, not failed
    others = tasks.survive.bulk_delay([(f"other-{i}", 0.05) for i in range(40)])
    wait_until(lambda: Execution.objects.filter(label="victim").exists(), timeout=30, message="the job to start")
    victim = Execution.objects.get(label="victim").pid

    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: second_run_started("victim"), timeout=60, message="the job to run again")
    delay = time.monotonic() - killed
    report(f"worker process SIGKILLed: its job ran again after {delay:.2f} s (the supervisor saw the death)")
    assert delay <= WORKER_TIMEOUT_S + RESCUE_INTERVAL_S + SLACK_S

    assert victim_job.get(timeout=30) == "victim"
    assert victim_job.attempts == 2
    assert victim_job.errors[0]["type"] == "djtasks.exceptions.WorkerLost"
    assert "SIGKILL" in victim_job.errors[0]["message"]
    rerun = Execution.objects.get(label="victim", attempt=2).pid
    assert rerun != victim
    wait_until(lambda: statuses()["succeeded"] == 41, timeout=60, message="nothing else lost")
    assert {r.refresh().status for r in others} == {"succeeded"}
    assert_duplicates_only_after_worker_loss()
    assert worker.stop() == 0


@pytest.mark.slow
def test_sigkill_of_a_whole_runworker_is_rescued_by_another_hosts_rescuer(start_worker):
    doomed = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: Worker.objects.count() == 1, timeout=60, message="the first runworker")
    result = tasks.survive.delay("orphan", sleep_first=60)
    wait_until(lambda: Execution.objects.filter(label="orphan").exists(), timeout=30, message="the job to start")
    survivor = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="the second runworker")

    os.killpg(doomed.proc.pid, signal.SIGKILL)  # supervisor and its worker process: nobody says goodbye
    killed = time.monotonic()
    wait_until(lambda: second_run_started("orphan"), timeout=60, message="the rescue")
    delay = time.monotonic() - killed
    report(
        f"whole runworker SIGKILLed: rescued and running again after {delay:.2f} s "
        f"(WORKER_TIMEOUT {WORKER_TIMEOUT_S} s, rescue interval {RESCUE_INTERVAL_S} s)"
    )
    assert WORKER_TIMEOUT_S - HEARTBEAT_INTERVAL_S - 0.5 <= delay <= WORKER_TIMEOUT_S + RESCUE_INTERVAL_S + SLACK_S
    assert result.get(timeout=30) == "orphan" and result.attempts == 2
    assert "sent no heartbeat since" in result.errors[0]["message"]
    assert Worker.objects.count() == 1, "the dead worker's row was deleted"
    assert "rescuer: 1 dead worker(s); 1 job(s) re-queued" in survivor.log
    assert survivor.stop() == 0


@pytest.mark.parametrize("job", [tasks.segfault, tasks.hard_exit], ids=["segfault", "os._exit(0)"])
def test_a_job_that_kills_its_process_uses_its_attempts_and_does_not_crash_loop(start_worker, job):
    killer = job.delay()  # max_attempts=2
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: killer.refresh().status == "failed", timeout=60, message="the job to fail for good")
    assert killer.attempts == 2
    assert [e["type"] for e in killer.errors] == ["djtasks.exceptions.WorkerLost"] * 2
    assert "died" in killer.error["message"]
    assert Execution.objects.filter(job_id=killer.id).count() == 2
    after = tasks.add.delay(20, 22)
    assert after.get(timeout=30) == 42, "the worker carries on"
    assert worker.log.count("died (") == 2 and "died before it was ready" not in worker.log
    assert worker.stop() == 0


def test_worker_processes_stop_on_their_own_when_the_supervisor_is_killed(start_worker):
    results = tasks.record.bulk_delay([(f"o-{i}", 0.5) for i in range(12)])
    worker = start_worker("--processes", "2", "--threads", "2")
    wait_until(lambda: Execution.objects.count() >= 4, timeout=60, message="jobs to start")
    children = worker_children(worker.proc.pid)
    assert len(children) == 2
    worker.proc.send_signal(signal.SIGKILL)  # the supervisor only
    worker.proc.wait(10)
    wait_until(lambda: not any(alive(c) for c in children), timeout=HEARTBEAT_INTERVAL_S + 30, message="orphans")
    counts = statuses()
    assert counts["running"] == 0 and counts["succeeded"] + counts["queued"] == 12, counts
    assert not Worker.objects.exists()
    runs = Counter(Execution.objects.values_list("job_id", flat=True))
    assert set(runs.values()) == {1}
    assert set(runs) == set(Job.objects.filter(status="succeeded").values_list("id", flat=True))
    start_worker("--processes", "1", "--threads", "4")
    wait_until(lambda: statuses()["succeeded"] == 12, timeout=60, message="the rest")
    assert Counter(Execution.objects.values_list("job_id", flat=True)) == Counter({r.id: 1 for r in results})


@pytest.mark.slow
def test_long_cpu_bound_jobs_do_not_starve_the_heartbeat_and_are_never_rescued(start_worker):
    seconds = WORKER_TIMEOUT_S + 2
    burners = [tasks.burn.delay(seconds) for _ in range(2)]
    start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: Execution.objects.filter(label="burn").count() == 2, timeout=60, message="both to start")
    (row,) = Worker.objects.all()
    worst = 0.0
    while not all(r.refresh().status == "succeeded" for r in burners):
        row.refresh_from_db()
        worst = max(worst, (timezone.now() - row.heartbeat_at).total_seconds())
        assert Worker.objects.filter(id=row.id).exists(), "declared dead while alive"
        time.sleep(0.1)
    report(
        f"2 pure-Python CPU-bound jobs of {seconds} s on 2 threads: oldest heartbeat seen {worst:.2f} s "
        f"(HEARTBEAT_INTERVAL {HEARTBEAT_INTERVAL_S} s, switch interval {burners[0].result} s)"
    )
    assert worst < HEARTBEAT_INTERVAL_S + 1.5
    assert [r.attempts for r in burners] == [1, 1] and all(not r.errors for r in burners)
    assert burners[0].result <= 0.005
