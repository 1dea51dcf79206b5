"""A real ``runworker`` given jobs whose outcome cannot be stored as it is: the worker lives, the bad job fails
naming the problem, and every other outcome of the batch is recorded."""

from __future__ import annotations

from collections import Counter

import pytest

from djtasks import JobFailed
from djtasks.models import Job
from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def statuses() -> Counter:
    return Counter(Job.objects.values_list("status", flat=True))


def test_one_unstorable_result_in_a_batch_fails_alone_and_every_other_outcome_is_recorded(start_worker):
    labels = [f"job-{i}" for i in range(100)]
    labels[37] = "bad"
    results = tasks.returns_unstorable.bulk_delay([(label,) for label in labels])
    failing = tasks.raises_unstorable.delay()  # its error message holds a NUL and a lone surrogate
    worker = start_worker("--processes", "1", "--threads", "4")
    wait_until(
        lambda: sum(statuses().values()) == statuses()["succeeded"] + statuses()["failed"],
        timeout=60,
        message="every job to finish",
    )
    assert statuses() == Counter(succeeded=99, failed=2)
    with pytest.raises(JobFailed) as info:
        results[37].get(timeout=5)
    assert info.value.exc_type == "djtasks.exceptions.SerializationError"
    assert "result['text'][1] contains a NUL character (\\x00) at index 6" in info.value.message
    assert [r.get(timeout=5) for i, r in enumerate(results) if i != 37] == [x for x in labels if x != "bad"]
    with pytest.raises(JobFailed, match=r"bad\\x00byte and \\udcff half"):
        failing.get(timeout=5)
    assert worker.proc.poll() is None  # the worker is still running
    assert worker.stop() == 0
