"""``DJTASKS["ROUTES"]`` and its precedence, ``djtasks.enqueue()`` by name, and their checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.checks import run_checks
from django.test import override_settings

import djtasks
from djtasks import JobStatus
from djtasks.conf import SettingError, parse
from djtasks.exceptions import SerializationError
from djtasks.maintenance.scheduler import Scheduler
from djtasks.models import Job
from tests.conftest import drain, make_schedule
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = {"default": {}, "other": {}, "slow": {}}


def routes(**extra):
    return override_settings(DJTASKS={"QUEUES": QUEUES, **extra})


def queue_of(result) -> str:
    return Job.objects.get(id=result.id).queue


def test_precedence_call_then_routes_then_job_then_default():
    with routes(ROUTES={"reports.*": "slow", "tests.testapp.tasks.add": "other"}):
        assert queue_of(tasks.build_report.delay(1)) == "slow"  # ROUTES beats @job(queue="other")
        assert queue_of(tasks.build_report.apply_async(args=(1,), queue="default")) == "default"  # the call wins
        assert queue_of(tasks.add.delay(1, 2)) == "other"  # exact name
        assert queue_of(tasks.echo.delay()) == "default"  # no route, no @job queue: DEFAULT_QUEUE
        assert queue_of(tasks.on_other.delay()) == "other"  # no route: @job(queue=)
    assert queue_of(tasks.build_report.delay(1)) == "other"  # without ROUTES: @job(queue=)


def test_an_exact_name_beats_a_pattern_and_the_first_matching_pattern_wins():
    with routes(ROUTES={"tests.testapp.*": "slow", "tests.*": "other", "tests.testapp.tasks.add": "other"}):
        assert queue_of(tasks.add.delay(1, 2)) == "other"
        assert queue_of(tasks.echo.delay()) == "slow"


def test_schedules_and_enqueue_by_name_follow_routes():
    with routes(ROUTES={"tests.testapp.tasks.tick": "slow", "reports.*": "slow"}):
        row = make_schedule("routed", next_fire_at=datetime(2024, 1, 1, tzinfo=UTC))
        Scheduler.for_django().run_once(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC))
        assert Job.objects.get(name=row.job_name).queue == "slow"
        assert queue_of(djtasks.enqueue("reports.build", args=(1,))) == "slow"
        assert queue_of(djtasks.enqueue("reports.build", args=(1,), queue="default")) == "default"


def test_a_route_to_an_unknown_queue_is_a_setting_error_naming_it():
    with pytest.raises(SettingError, match=r"'reports.\*' routes to queue 'nope', which is not in QUEUES") as caught:
        parse({"QUEUES": QUEUES, "ROUTES": {"reports.*": "nope"}})
    assert caught.value.check_id == "djtasks.E010"
    with routes(ROUTES={"reports.*": "nope"}):
        assert [e.id for e in run_checks(tags=["djtasks"])] == ["djtasks.E010"]
    with pytest.raises(SettingError, match="must be a dict"):
        parse({"ROUTES": [("a", "default")]})


def test_a_route_matching_no_registered_job_is_a_warning():
    with routes(ROUTES={"reprots.*": "slow", "tests.testapp.tasks.ad": "other", "reports.*": "slow"}):
        found = [(m.id, m.msg, m.hint) for m in run_checks(tags=["djtasks"])]
    assert [f[0] for f in found] == ["djtasks.W010", "djtasks.W010"]
    assert "'reprots.*'" in found[0][1] and "'tests.testapp.tasks.ad'" in found[1][1]
    assert "did you mean tests.testapp.tasks.add" in found[1][2]


def test_enqueue_by_name_runs_the_registered_job_with_its_options():
    result = djtasks.enqueue("tests.testapp.tasks.add", args=[2, 3])
    row = Job.objects.get(id=result.id)
    assert (row.name, row.queue, row.args, row.max_attempts) == ("tests.testapp.tasks.add", "default", [2, 3], 1)
    flaky = djtasks.enqueue("tests.testapp.tasks.flaky", kwargs={"succeed_on": 1}, priority=9)
    assert Job.objects.get(id=flaky.id).max_attempts == 3 and Job.objects.get(id=flaky.id).priority == 9
    drain()
    assert result.get(timeout=1) == 5 and flaky.get(timeout=1) == 1


def test_enqueue_of_a_name_not_registered_here_uses_defaults_and_fails_clearly_in_a_worker():
    result = djtasks.enqueue("billing.tasks.charge", args=[7], max_attempts=4, countdown=0)
    row = Job.objects.get(id=result.id)
    assert (row.queue, row.priority, row.max_attempts, row.args) == ("default", 0, 4, [7])
    drain()  # no worker has registered it: the job fails, it is never imported from its name
    assert result.refresh().status == JobStatus.FAILED
    assert (
        result.error["type"] == "djtasks.exceptions.NotRegistered" and "billing.tasks.charge" in result.error["message"]
    )


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("bad\x00name", ValueError, "NUL character"),
        ("x" * 256, ValueError, "256 characters long; at most 255"),
        ("", ValueError, "must not be empty"),
        (42, TypeError, "must be a string"),
    ],
)
def test_enqueue_refuses_a_bad_name_and_writes_nothing(name, error, words):
    with pytest.raises(error, match=words):
        djtasks.enqueue(name)
    assert not Job.objects.exists()


def test_enqueue_checks_arguments_and_options_like_apply_async():
    with pytest.raises(SerializationError):
        djtasks.enqueue("tests.testapp.tasks.add", args=[object(), 1])
    with pytest.raises(ValueError, match="unknown queue 'nope'"):
        djtasks.enqueue("billing.tasks.charge", queue="nope")
    with pytest.raises(ValueError, match="priority must be between"):
        djtasks.enqueue("billing.tasks.charge", priority=1000)
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        djtasks.enqueue("billing.tasks.charge", max_attempts=0)
    assert not Job.objects.exists()
