"""Cancel of running jobs, cold shutdown and recycling, in a real ``runworker``."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from djtasks import JobCancelled
from djtasks.models import Job, Worker
from tests.acceptance.support import statuses, worker_children
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def started(label: str) -> bool:
    return Execution.objects.filter(label=label).exists()


def test_cancel_a_running_job_cooperatively(start_worker):
    result = tasks.cooperative.delay(timeout=60)
    start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: started("cooperative"), timeout=30, message="the job to start")
    worker_id = Worker.objects.get().id
    asked = time.monotonic()
    assert result.cancel() is True
    with pytest.raises(JobCancelled, match="cancelled while running"):
        result.get(timeout=30)
    assert time.monotonic() - asked < 5
    assert result.refresh().status == "cancelled" and result.result == "stopped"
    assert Worker.objects.get().id == worker_id, "the process was not killed"


def test_cancel_with_terminate_kills_the_process_and_hands_its_other_jobs_back(start_worker):
    stubborn = tasks.record.delay("stubborn", 60)  # never looks at is_cancelled()
    bystander = tasks.survive.delay("bystander", sleep_first=3)
    worker = start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: started("stubborn") and started("bystander"), timeout=30, message="both jobs to start")
    (victim,) = worker_children(worker.proc.pid)
    asked = time.monotonic()
    assert stubborn.cancel(terminate=True) is True
    wait_until(lambda: stubborn.refresh().status == "cancelled", timeout=30, message="the job to be cancelled")
    assert time.monotonic() - asked < 5
    assert stubborn.error["type"] == "djtasks.exceptions.JobCancelled"
    assert "terminated on request" in stubborn.error["message"]
    assert bystander.get(timeout=30) == "bystander"
    assert bystander.attempts == 1, "handed back without counting the attempt"
    runs = Execution.objects.filter(label="bystander").values_list("pid", flat=True)
    assert len(runs) == 2 and victim in runs and any(pid != victim for pid in runs)
    assert Execution.objects.filter(label="stubborn").count() == 1
    assert worker.stop() == 0


def test_cancel_outlives_the_process_running_the_job(start_worker):
    result = tasks.survive.delay("doomed", sleep_first=60)  # would be retried: max_attempts=3
    worker = start_worker("--processes", "1", "--threads", "1")
    wait_until(lambda: started("doomed"), timeout=30, message="the job to start")
    assert result.cancel() is True  # the job never looks; then its process dies
    (victim,) = worker_children(worker.proc.pid)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: result.refresh().status == "cancelled", timeout=30, message="the job to end cancelled")
    time.sleep(1)
    assert Execution.objects.filter(label="doomed").count() == 1, "a cancelled job is not run again"
    assert worker.stop() == 0


def test_second_signal_is_a_cold_stop_that_hands_jobs_back(start_worker):
    results = tasks.record.bulk_delay([("long", 60) for _ in range(3)])
    worker = start_worker("--processes", "1", "--threads", "3", "--shutdown-timeout", "60")
    wait_until(lambda: Execution.objects.count() == 3, timeout=30, message="the jobs to start")
    worker.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert worker.proc.poll() is None, "a warm stop waits for running jobs"
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 10
    for result in results:
        job = Job.objects.get(id=result.id)
        assert (job.status, job.attempt, job.worker_id) == ("queued", 0, None)
    assert not Worker.objects.exists()
    assert "cold shutdown" in worker.log


def test_recycling_by_job_count_loses_and_repeats_nothing(start_worker):
    results = tasks.record.bulk_delay([(f"r-{i}", 0.05) for i in range(23)])
    worker = start_worker("--processes", "1", "--threads", "2", "--max-jobs-per-child", "5")
    wait_until(lambda: statuses()["succeeded"] == 23, timeout=90, message="all jobs")
    runs = Counter(Execution.objects.values_list("job_id", flat=True))
    assert runs == Counter({r.id: 1 for r in results})
    per_pid = Counter(Execution.objects.values_list("pid", flat=True))
    assert max(per_pid.values()) <= 5 and len(per_pid) >= 5, per_pid
    assert worker.log.count("recycles: claimed --max-jobs-per-child 5 jobs") >= 4
    assert worker.stop() == 0


def test_recycling_by_memory(start_worker):
    hog = tasks.hog.delay(300)
    later = tasks.record.bulk_delay([(f"after-{i}",) for i in range(5)])
    worker = start_worker("--processes", "1", "--threads", "1", "--max-memory-per-child", "250")
    wait_until(lambda: statuses()["succeeded"] == 6, timeout=60, message="all jobs")
    hog_pid = Execution.objects.get(label="hog").pid
    after_pids = set(Execution.objects.exclude(label="hog").values_list("pid", flat=True))
    assert hog.attempts == 1
    assert Counter(Execution.objects.values_list("job_id", flat=True)) == Counter(
        {hog.id: 1, **{r.id: 1 for r in later}}
    )
    assert "recycles: memory" in worker.log
    assert hog_pid not in after_pids, "the process stopped claiming once it was over the limit"
    assert worker.stop() == 0
