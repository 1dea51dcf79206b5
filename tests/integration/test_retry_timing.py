"""``@job(retry_delay=)`` and the documented retry defaults, run through the worker's executor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from djtasks import JobStatus, job
from djtasks.jobs import DEFAULT_RETRY_DELAY_S
from djtasks.models import Job
from djtasks.registry import registry
from djtasks.worker.executor import failure_outcome
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def _gap(result) -> timedelta:
    """Time between the failed attempt (as recorded) and the next run it was given."""
    row = Job.objects.get(id=result.id)
    failed_at = datetime.fromisoformat(row.errors[-1]["at"])
    return row.run_at - failed_at


def test_retry_delay_waits_that_long_before_the_next_attempt():
    result = tasks.fixed_delay.delay()
    assert drain() == 1  # the retry is not due yet: nothing else runs
    assert result.status == JobStatus.QUEUED and result.attempts == 1
    assert _gap(result) == timedelta(seconds=5)


def test_the_default_is_a_pause_not_an_immediate_retry():
    result = tasks.default_delay.delay()
    assert drain() == 1
    assert result.refresh().status == JobStatus.QUEUED
    assert _gap(result) == timedelta(seconds=DEFAULT_RETRY_DELAY_S) == timedelta(seconds=10)


def test_ctx_retry_without_countdown_uses_retry_delay_and_with_countdown_uses_that():
    result = tasks.retry_without_countdown.delay()
    drain()
    assert _gap(result) == timedelta(seconds=7)
    immediate = tasks.asks_retry.delay()  # ctx.retry(countdown=0)
    assert drain() == 2 and immediate.refresh().status == JobStatus.SUCCEEDED


def test_retry_in_precedence_is_countdown_then_backoff_then_retry_delay():
    assert tasks.fixed_delay.retry_in(1) == 5.0
    assert tasks.fixed_delay.retry_in(1, countdown=2.5) == 2.5
    assert tasks.flaky.retry_in(1, rand=1.0) == 1.0  # backoff 1 s base: retry_delay is not used
    assert tasks.flaky.retry_in(3, rand=0.0) == 2.0  # 4 s nominal, half fixed


def test_failure_outcome_schedules_the_retry_from_now():
    row = {"id": 1, "attempt": 1}
    outcome = failure_outcome(row, ConnectionError("down"), NOW, retry_in=tasks.fixed_delay.retry_in(1))
    assert outcome["status"] == "queued" and outcome["run_at"] == NOW + timedelta(seconds=5)


def test_which_exceptions_retry_by_default():
    definition = tasks.default_delay
    assert definition.should_retry(ConnectionError(), 1, 2)
    assert definition.should_retry(ValueError(), 1, 2)  # any Exception while attempts remain
    assert not definition.should_retry(ValueError(), 2, 2)  # attempts spent
    assert not definition.should_retry(SystemExit(1), 1, 2)  # not an Exception
    assert not definition.should_retry(KeyboardInterrupt(), 1, 2)
    assert not tasks.boom.should_retry(ValueError(), 1, 1)  # max_attempts=1 (the default) never retries


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [(-1, ImproperlyConfigured, "retry_delay must be >= 0, got -1"), ("5", TypeError, "retry_delay must be a number")],
)
def test_a_bad_retry_delay_is_refused_at_decoration(value, error, words):
    with pytest.raises(error, match=words):

        @job(name="tests.bad_retry_delay", retry_delay=value)
        def bad():
            pass

    assert "tests.bad_retry_delay" not in registry


def test_retry_delay_takes_a_timedelta():
    @job(name="tests.td_retry_delay", max_attempts=2, retry_delay=timedelta(minutes=1))
    def fine():
        pass

    try:
        assert fine.retry_in(1) == 60.0
    finally:
        registry.unregister("tests.td_retry_delay")
