"""The worked port of docs/migrating-from-celery.md (tests/celery_port) on real worker and beat processes."""

from __future__ import annotations

import pytest
from django.db import transaction

import djtasks
from djtasks import JobResult, JobStatus
from djtasks.models import Job, Schedule
from djtasks.periodic import add_schedule
from tests.celery_port import tasks
from tests.conftest import ManagedProcess, wait_until
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def labels(prefix: str) -> list[str]:
    return sorted(Execution.objects.filter(label__startswith=prefix).values_list("label", flat=True))


def test_the_ported_newsletter_project_runs_like_the_celery_original(start_worker, tmp_path):
    worker = start_worker("--processes", "1", "--threads", "4")
    beat = ManagedProcess(tmp_path, "runbeat")
    try:
        # transaction.on_commit(lambda: send_welcome.delay(user.pk)) -> delay() inside the transaction
        with transaction.atomic():
            welcome = tasks.send_welcome.delay(42)
        with transaction.atomic():
            tasks.send_welcome.delay(43)
            transaction.set_rollback(True)  # rolled back: that job never existed
        # render_issue.apply_async(args=(7,)) routed by CELERY_TASK_ROUTES -> DJTASKS["ROUTES"]
        rendered = tasks.render_issue.apply_async(args=(7,))
        # app.send_task("newsletter.tasks.send_digest", kwargs=...) -> djtasks.enqueue by name
        digest = djtasks.enqueue(
            "tests.celery_port.tasks.send_digest", kwargs={"issue_id": 5, "subscribers": [1, 3, 9]}
        )
        synced = tasks.sync_subscriber.delay(8)
        # PeriodicTask.objects.create(...) at run time -> add_schedule (or Schedule.objects.create)
        add_schedule("digest-every-second", tasks.send_digest, every=1, kwargs={"issue_id": 6, "subscribers": [2]})

        assert welcome.get(timeout=60) == "welcome sent to 42"  # AsyncResult(id).get(timeout=...)
        assert JobResult(welcome.id).successful()
        assert rendered.get(timeout=60) == "<h1>Issue 7</h1>" and Job.objects.get(id=rendered.id).queue == "slow"
        assert digest.get(timeout=60) == 3
        assert synced.get(timeout=60) == 3 and synced.attempts == 3  # two self.retry(exc=...) then success
        wait_until(lambda: labels("alert"), timeout=60, message="the failure alert")
        wait_until(lambda: "deliver 2" in labels("deliver 2"), timeout=60, message="the scheduled digest")
    finally:
        beat.stop(timeout=30)
    assert labels("welcome") == ["welcome 42"]
    deliveries = Job.objects.filter(name=tasks.deliver.name, kwargs={}, args__1=5)
    by_subscriber = {job.args[0]: job for job in deliveries}
    wait_until(lambda: all(JobResult(j.id).ready() for j in by_subscriber.values()), timeout=60, message="deliveries")
    ok, flaky, dead = (JobResult(by_subscriber[s].id) for s in (1, 3, 9))
    assert ok.result == "issue 5 to 1" and ok.attempts == 1
    assert flaky.result == "issue 5 to 3" and flaky.attempts == 2  # autoretry_for + retry_backoff
    assert dead.status == JobStatus.FAILED and dead.attempts == 4  # max_retries=3: four attempts
    assert dead.error["message"] == "mailbox does not exist"
    # @task_failure.connect(sender=deliver): sent once, in the worker, with the error and the exception
    assert labels("alert") == ["alert builtins.ConnectionError: mailbox does not exist (ConnectionError)"]
    assert Schedule.objects.get(name="weekly-digest").source == "code"  # the ported beat schedule, synced
    assert worker.stop() == 0
