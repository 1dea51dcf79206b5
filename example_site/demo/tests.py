"""The demo site's own tests, written as a project using djtasks would write them: ``djtasks.testing`` runs
the jobs the views enqueue, in the test's transaction, with no worker process."""

from __future__ import annotations

from django.test import TestCase
from django.urls import reverse

from djtasks import JobStatus
from djtasks.testing import JobsTestMixin

from .tasks import add, fail, flaky_add


class EnqueueFormTests(JobsTestMixin, TestCase):
    def post(self, **data):
        form = {"job": "add", "a": 2, "b": 3, "seconds": 0, "countdown": 0, **data}
        return self.client.post(reverse("index"), form)

    def test_add_is_enqueued_and_runs(self):
        response = self.post()
        [queued] = self.jobs.assert_enqueued(add, args=[2, 3, 0.0])
        self.assertRedirects(response, reverse("job-detail", kwargs={"job_id": queued.id}))
        [result] = self.jobs.run()
        self.assertEqual(result.get(), 5)
        page = self.client.get(reverse("job-detail", kwargs={"job_id": queued.id}))
        self.assertContains(page, "succeeded")

    def test_countdown_waits_for_the_clock(self):
        self.post(countdown=120)
        self.assertEqual(self.jobs.run(), [])
        self.jobs.advance(120)
        self.assertEqual([r.get() for r in self.jobs.run()], [5])

    def test_flaky_add_succeeds_on_its_third_attempt_after_backoff(self):
        self.post(job="flaky_add", a=4, b=5)
        self.jobs.assert_enqueued(flaky_add, args=[4, 5], queue="slow")
        [first] = self.jobs.run()
        self.assertEqual(first.status, JobStatus.QUEUED)  # attempt 1 failed; retry after 1..2 s
        self.jobs.advance(2)
        self.jobs.run()
        self.jobs.advance(4)  # attempt 2 failed; retry after 2..4 s
        [last] = self.jobs.run()
        self.assertEqual((last.status, last.attempts, last.get()), (JobStatus.SUCCEEDED, 3, 9))

    def test_fail_stores_the_error(self):
        self.post(job="fail", a=1, b=2)
        [result] = self.jobs.run()
        self.assertEqual(result.status, JobStatus.FAILED)
        self.assertIn("you asked for it: 1 2", result.error["message"])
        self.jobs.assert_not_enqueued(fail)
