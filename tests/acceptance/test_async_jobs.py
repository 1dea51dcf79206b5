"""``async def`` jobs on a real ``runworker``: many at once on one process's event loop, the async ORM, soft and
hard time limits, retries, cancel and heartbeats; and ``django.tasks`` tasks (sync and async) beside ``@job``
functions in one queue, with a SIGKILLed worker's task rescued like any job."""

from __future__ import annotations

import os
import signal
import sys

import django
import pytest
from django.db.models import Max, Min

from djtasks import JobResult
from djtasks.models import Job, Worker
from tests.acceptance.support import statuses
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]
needs_django6 = pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks needs Django 6")

ASYNC_JOBS = 500
SLEEP_S = 1.0


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


def test_500_sleeping_async_jobs_run_at_once_on_one_process(start_worker):
    results = tasks.asleep.bulk_delay([(SLEEP_S,)] * ASYNC_JOBS)
    worker = start_worker("--processes", "1", "--threads", "2")  # --async-concurrency: the default, 100
    wait_until(lambda: Worker.objects.count() == 1, timeout=60, message="the worker process")
    heartbeat_before = Worker.objects.get().heartbeat_at
    wait_until(lambda: statuses()["succeeded"] == ASYNC_JOBS, timeout=120, message="all async jobs to finish")
    span = Job.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    wall = (span["last"] - span["first"]).total_seconds()
    report(
        f"{ASYNC_JOBS} async jobs each awaiting asyncio.sleep({SLEEP_S:g}) on 1 process, 2 threads, "
        f"--async-concurrency 100 (default): {wall:.2f} s from the first start to the last finish"
    )
    # Five rounds of 100 take five seconds of sleeping; threads alone (2 at a time) would take 250 s.
    assert 5 * SLEEP_S <= wall < 40
    assert {r.refresh().result for r in results[:5]} == {SLEEP_S}
    assert len({j.worker_id for j in Job.objects.all()}) == 1
    # The heartbeat thread kept beating while the loop ran 250 jobs at once.
    assert Worker.objects.get().heartbeat_at > heartbeat_before
    assert worker.stop() == 0


def test_async_jobs_retry_use_the_orm_and_honour_soft_and_hard_limits_and_cancel(start_worker):
    flaky = tasks.arecord.delay("async-flaky", fail_until=2)  # max_attempts=3
    soft = tasks.asoft_limited.delay()
    overdue = tasks.aoverdue.delay(60)  # time_limit=1.5
    polite = tasks.acooperative.delay(timeout=60)
    worker = start_worker("--processes", "1", "--threads", "1")

    assert flaky.get(timeout=60) == 3  # third attempt: the ORM saw three rows
    assert [e["type"] for e in flaky.errors] == ["builtins.RuntimeError"] * 2

    wait_until(lambda: soft.ready(), timeout=30, message="the soft limit")
    assert soft.status == "failed" and soft.error["type"] == "djtasks.exceptions.SoftTimeLimitExceeded"
    assert Execution.objects.filter(job_id=soft.id, label="async cleaned up").exists()

    wait_until(lambda: Execution.objects.filter(label="acooperative").exists(), timeout=30, message="acooperative")
    assert polite.cancel() is True
    wait_until(lambda: polite.ready(), timeout=30, message="the cancel")
    assert polite.status == "cancelled" and polite.result == "stopped"

    wait_until(lambda: overdue.ready(), timeout=60, message="the hard limit")
    assert overdue.status == "failed" and overdue.error["type"] == "djtasks.exceptions.TimeLimitExceeded"
    # the killed process was replaced and still runs async jobs
    assert tasks.asleep.delay(0.01).get(timeout=60) == 0.01
    assert worker.stop() == 0


@needs_django6
def test_runworker_runs_tasks_and_jobs_sync_and_async_from_one_queue(start_worker):
    from tests.testapp import django_tasks as t

    handles = {
        "task": t.add.enqueue(1, 2),
        "async task": t.arecord.enqueue("mixed-async-task"),
        "context task": t.context_info.enqueue(label="mixed"),
        "job": tasks.add.delay(3, 4),
        "async job": tasks.arecord.delay("mixed-async-job"),
        "async sleeper": tasks.asleep.delay(0.1),
    }
    gone = t.add.enqueue(5, 5)  # then renamed, as if the task had been removed since it was enqueued
    Job.objects.filter(id=gone.id).update(name="tests.testapp.django_tasks.removed")
    assert {j.queue for j in Job.objects.all()} == {"default"}
    worker = start_worker("--processes", "1", "--threads", "2")
    wait_until(lambda: statuses()["succeeded"] == len(handles), timeout=90, message="every job and task")
    failed = Job.objects.get(id=gone.id)
    assert failed.status == "failed" and "cannot be imported by the worker" in failed.errors[-1]["message"]
    assert t.add.get_result(handles["task"].id).return_value == 3
    assert t.arecord.get_result(handles["async task"].id).return_value == 1
    info = t.context_info.get_result(handles["context task"].id)
    assert info.return_value["attempt"] == 1 and info.return_value["worker_ids"] == info.worker_ids
    assert handles["job"].get(timeout=5) == 7 and handles["async job"].get(timeout=5) == 1
    assert JobResult(handles["task"].id).result == 3  # a task's id is a job id
    assert worker.stop() == 0


@needs_django6
def test_a_sigkilled_workers_task_is_rescued_like_any_job(start_worker):
    from django.tasks import TaskResultStatus

    from tests.testapp import django_tasks as t

    worker = start_worker("--processes", "2", "--threads", "2")
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="two worker processes")
    result = t.record.enqueue("task-victim", sleep_first=60)  # max_attempts=2
    wait_until(lambda: Execution.objects.filter(label="task-victim").exists(), timeout=30, message="the task to start")
    victim = Execution.objects.get(label="task-victim").pid
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: Execution.objects.filter(label="task-victim", attempt=2).exists(), timeout=60, message="rerun")
    wait_until(lambda: result.refresh() or result.is_finished, timeout=30, message="the task to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2
    assert result.attempts == 2 and len(set(result.worker_ids)) == 2 and all(result.worker_ids)
    assert result.errors[0].exception_class_path == "djtasks.exceptions.WorkerLost"
    assert Execution.objects.get(label="task-victim", attempt=2).pid != victim
    assert worker.stop() == 0
