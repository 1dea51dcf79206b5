"""``manage.py djtasks purge QUEUE`` and ``manage.py djtasks jobs``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from djtasks.models import Job
from djtasks.periodic import add_schedule
from tests.conftest import subprocess_env
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("djtasks", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_only_that_queues_waiting_jobs_and_prints_the_count():
    waiting = [tasks.add.delay(1, 1), tasks.add.apply_async(args=(1, 2), countdown=3600)]  # due and scheduled
    kept = tasks.on_other.delay()
    done = tasks.add.delay(2, 2)
    Job.objects.filter(id=done.id).update(status="succeeded")
    assert run("purge", "default", "--yes") == "deleted 2 waiting job(s) from queue 'default'\n"
    assert not Job.objects.filter(id__in=[r.id for r in waiting]).exists()
    assert set(Job.objects.values_list("id", flat=True)) == {kept.id, done.id}


def test_purge_of_an_unknown_queue_is_an_error_naming_it():
    tasks.add.delay(1, 1)
    with pytest.raises(CommandError, match="unknown queue 'defualt'; known: default, other, slow"):
        run("purge", "defualt", "--yes")
    assert Job.objects.count() == 1


def test_purge_asks_for_confirmation(monkeypatch):
    tasks.add.delay(1, 1)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="nothing was deleted"):
        run("purge", "default")
    assert Job.objects.count() == 1
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    assert "deleted 1 waiting job(s)" in run("purge", "default")


def test_purge_without_a_terminal_asks_for_yes():
    tasks.add.delay(1, 1)
    proc = subprocess.run(
        [sys.executable, "manage.py", "djtasks", "purge", "default"],
        input="",
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 1 and "1 waiting job(s) in queue 'default'; pass --yes" in proc.stderr
    assert Job.objects.count() == 1
    proc = subprocess.run(
        [sys.executable, "manage.py", "djtasks", "purge", "default"],
        input="yes\n",
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0 and "deleted 1 waiting job(s)" in proc.stdout, proc.stderr
    assert Job.objects.count() == 0


def test_jobs_lists_queue_attempts_limits_and_schedules():
    add_schedule("reports-hourly", tasks.build_report, every=timedelta(hours=1), args=[1])
    with override_settings(
        DJTASKS={"QUEUES": {"default": {}, "other": {}, "slow": {}}, "ROUTES": {"tests.testapp.tasks.add": "slow"}}
    ):
        text = run("jobs")
        listed = {info["name"]: info for info in json.loads(run("jobs", "--json"))}
    block = text.split("reports.build\n")[1].split("\n\n")[0]
    assert (
        "queue other (from @job), priority 0" in block and "schedule: reports-hourly (every 3600 s, database)" in block
    )
    assert "tests.testapp.tasks.add\n    queue slow (from ROUTES)" in text
    assert "tests.testapp.tasks.fixed_delay\n    queue default (from DEFAULT_QUEUE), priority 0\n" in text
    assert "attempts 3: after 5 s on Exception" in text
    assert "attempts 3: backoff 1 s..600 s on Exception" in text  # flaky
    assert "attempts 3: after 0 s on KeyError" in text  # only_keyerror_retries
    assert "limits: time_limit 1.5 s" in text  # overdue
    assert "schedule: testapp-rare (0 4 29 2 *, code)" in text
    assert "schedule: testapp-settings (0 5 29 2 *, settings)" in run("jobs")  # the test settings' BEAT_SCHEDULE
    assert listed["tests.testapp.tasks.soft_limited"]["soft_time_limit"] == 0.5
    assert listed["tests.testapp.tasks.add"]["queue_from"] == "ROUTES"
    assert text.endswith(f"{len(listed)} registered job(s)\n")


def test_purging_a_workflow_step_cancels_the_steps_waiting_on_it():
    from djtasks import chain

    chain(tasks.add.s(1, 2), tasks.on_other.si()).delay()  # the second step waits for the first
    first, second = Job.objects.get(status="queued"), Job.objects.get(status="waiting")
    assert (first.name, second.name) == (tasks.add.name, tasks.on_other.name)
    assert run("purge", "default", "--yes") == "deleted 1 waiting job(s) from queue 'default'\n"
    (rest,) = Job.objects.all()
    assert rest.id == second.id and rest.status == "cancelled"  # not left waiting forever
