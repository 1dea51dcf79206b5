"""``djtasks.testing``: running jobs in-process in a project's own tests (TestCase and pytest-django)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import TestCase

from djtasks import JobStatus, job
from djtasks.testing import JobRunner, JobsTestMixin, TooManyJobs
from tests.testapp.models import Execution
from tests.testapp.tasks import add, asks_retry, boom, flaky, on_other, record


@job(name="tests.testing.hand_off")
def hand_off(n: int) -> int:
    """Enqueues the next step itself: run() runs both."""
    add.delay(n, 1)
    return n


@job(name="tests.testing.forever")
def forever() -> None:
    forever.delay()


@job(name="tests.testing.later", bind=True, max_attempts=2)
def later(ctx) -> int:
    if ctx.attempt == 1:
        ctx.retry(countdown=30)
    return ctx.attempt


class RunnerInTestCase(JobsTestMixin, TestCase):
    """Inside TestCase's transaction: what the tests of a Django project look like."""

    def test_enqueued_job_runs_and_its_result_is_stored(self):
        add.delay(2, 3)
        [queued] = self.jobs.assert_enqueued(add, args=[2, 3], queue="default")
        [result] = self.jobs.run()
        assert result.id == queued.id and result.status == JobStatus.SUCCEEDED and result.get() == 5
        self.jobs.assert_not_enqueued(add)

    def test_a_job_enqueued_in_a_rolled_back_block_does_not_run(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            record.delay("rolled back")
            raise RuntimeError("roll back")
        record.delay("committed")
        assert [r.get() for r in self.jobs.run()] == ["committed"]
        assert list(Execution.objects.values_list("label", flat=True)) == ["committed"]

    def test_retries_wait_for_their_backoff_on_the_runner_clock(self):
        result = flaky.delay(3)  # fails on attempts 1 and 2; retry_backoff=1: 0.5..1 s, then 1..2 s
        assert [r.status for r in self.jobs.run()] == [JobStatus.QUEUED]  # attempt 1 failed, retry not due yet
        assert result.refresh().attempts == 1
        assert self.jobs.run() == []
        self.jobs.advance(1)
        assert [r.status for r in self.jobs.run()] == [JobStatus.QUEUED]
        self.jobs.advance(2)
        [done] = self.jobs.run()
        assert done.status == JobStatus.SUCCEEDED and done.get() == 3
        assert list(Execution.objects.order_by("attempt").values_list("attempt", flat=True)) == [1, 2, 3]

    def test_countdown_runs_once_the_clock_passes_it(self):
        add.apply_async(args=(1, 1), countdown=60)
        assert self.jobs.run() == []
        self.jobs.advance(59)
        assert self.jobs.run() == [] and len(self.jobs.enqueued(add)) == 1
        self.jobs.advance(1)
        assert [r.get() for r in self.jobs.run()] == [2]

    def test_ctx_retry_countdown_is_on_the_runner_clock(self):
        result = later.delay()
        self.jobs.run()
        assert result.refresh().status == JobStatus.QUEUED
        self.jobs.advance(timedelta(seconds=30))
        self.jobs.run()
        assert result.refresh().status == JobStatus.SUCCEEDED and result.get() == 2

    def test_jobs_enqueued_by_a_job_run_in_the_same_run(self):
        hand_off.delay(41)
        assert sorted(r.get() for r in self.jobs.run()) == [41, 42]

    def test_a_failing_job_fails_without_raising_in_the_test(self):
        result = boom.delay("nope")
        self.jobs.run()
        assert result.refresh().status == JobStatus.FAILED and "nope" in result.error["message"]

    def test_retry_due_at_once_runs_in_the_same_run(self):
        result = asks_retry.delay()
        assert len(self.jobs.run()) == 2 and result.get() == 2

    def test_runs_highest_priority_first_and_only_its_queues(self):
        add.apply_async(args=(0, 1), priority=-5)
        add.apply_async(args=(0, 2), priority=50)
        on_other.delay()
        only_default = JobRunner(queues=["default"])
        assert [r.get() for r in only_default.run()] == [2, 1]
        assert [j.name for j in self.jobs.enqueued()] == [on_other.name]

    def test_a_job_that_enqueues_itself_forever_is_stopped(self):
        forever.delay()
        with self.assertRaisesMessage(TooManyJobs, "enqueue or retry itself"):
            self.jobs.run(max_jobs=5)

    def test_assert_enqueued_says_what_was_there(self):
        add.delay(1, 2)
        with self.assertRaisesMessage(AssertionError, "add(args=[1, 2]"):
            self.jobs.assert_enqueued(add, args=[9, 9])
        with self.assertRaisesMessage(AssertionError, "expected 2 job(s)"):
            self.jobs.assert_enqueued(add, count=2)
        with self.assertRaisesMessage(AssertionError, "expected no"):
            self.jobs.assert_not_enqueued(add)


@pytest.mark.django_db
def test_in_pytest_django_with_an_injected_clock():
    """A clock of your own: a callable returning an aware datetime."""
    moments = [datetime.now(UTC)]
    runner = JobRunner(clock=lambda: moments[-1])
    add.apply_async(args=(2, 2), countdown=3600)
    assert runner.run() == []
    moments.append(moments[-1] + timedelta(hours=2))
    assert [r.get() for r in runner.run()] == [4]
    with pytest.raises(TypeError, match="move that one"):
        runner.advance(1)


@pytest.mark.django_db(transaction=True)
def test_committed_jobs_in_a_transactional_test():
    with transaction.atomic():
        add.delay(20, 22)
    assert [r.get() for r in JobRunner().run()] == [42]


@pytest.mark.django_db
def test_a_retry_is_due_on_the_injected_clock_not_on_real_time():
    """The outcome's times come from the runner's clock: a clock years ahead still waits out the countdown."""
    moments = [datetime.now(UTC) + timedelta(days=365 * 3)]
    runner = JobRunner(clock=lambda: moments[-1])
    result = later.delay()
    assert len(runner.run()) == 1 and result.refresh().status == JobStatus.QUEUED
    assert result.refresh().status == JobStatus.QUEUED
    moments.append(moments[-1] + timedelta(seconds=29))
    assert runner.run() == []
    moments.append(moments[-1] + timedelta(seconds=1))
    assert [r.get() for r in runner.run()] == [2]


@job(name="tests.testing.count_seeds")
async def count_seeds() -> int:
    return await Execution.objects.filter(label="seed").acount()


class AsyncJobsInTestCase(JobsTestMixin, TestCase):
    def test_an_async_job_sees_what_the_test_wrote(self):
        Execution.objects.create(label="seed", attempt=1, pid=0)  # uncommitted: TestCase's transaction
        result = count_seeds.delay()
        self.jobs.run()
        assert result.get() == 1

    def test_an_async_job_runs_and_sees_the_test_data(self):
        """An ``async def`` job runs to completion in run(); its database work (through sync_to_async) is in
        the test's transaction."""
        from tests.testapp.tasks import arecord

        result = arecord.delay("async-in-test", fail_until=1)  # attempt 1 fails, attempt 2 succeeds
        self.jobs.run()
        self.jobs.advance(60)
        self.jobs.run()
        assert result.refresh().status == JobStatus.SUCCEEDED
        assert Execution.objects.filter(label="async-in-test").count() == 2
