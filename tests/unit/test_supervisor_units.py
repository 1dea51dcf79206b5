"""Pure pieces of the supervisor: what it records for jobs of processes it killed, and how it names exits."""

from __future__ import annotations

import json
import signal

from django.utils import timezone

from djtasks.ids import uuid7
from djtasks.maintenance.rescuer import RescueResult
from djtasks.worker.children import TERMINATE, TIME_LIMIT, Kill, RunningJob, describe_exit
from tests.testapp import tasks


def test_time_limit_outcome_follows_the_jobs_retry_policy():
    now = timezone.now()
    retrying = RunningJob(uuid7(), attempt=1, name=tasks.survive.name, max_attempts=3, time_limit=2)
    last = RunningJob(uuid7(), attempt=3, name=tasks.survive.name, max_attempts=3, time_limit=2)
    unknown = RunningJob(uuid7(), attempt=1, name="not.registered", max_attempts=3, time_limit=2)
    outcomes = Kill(TIME_LIMIT, [retrying, last, unknown]).outcomes(4242, now)
    assert [o["status"] for o in outcomes] == ["queued", "failed", "failed"]
    error = json.loads(outcomes[0]["error"])
    assert error["type"] == "djtasks.exceptions.TimeLimitExceeded" and error["attempt"] == 1
    assert "time_limit of 2 s" in error["message"] and "pid 4242" in error["message"]


def test_terminate_outcome_is_cancelled():
    (outcome,) = Kill(TERMINATE, [RunningJob(uuid7(), attempt=2)]).outcomes(7, timezone.now())
    assert outcome["status"] == "cancelled" and outcome["attempt"] == 2
    assert "terminated on request" in json.loads(outcome["error"])["message"]


def test_describe_exit():
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV"
    assert describe_exit(0) == "exit code 0" and describe_exit(None) == "still running"


def test_rescue_result_from_rows():
    w1, w2, a, b, c = uuid7(), uuid7(), uuid7(), uuid7(), uuid7()
    rows = [
        {"worker_id": w1, "job_id": a, "status": "queued", "attempt": 1, "charged": True},
        {"worker_id": w1, "job_id": b, "status": "failed", "attempt": 3, "charged": True},
        {"worker_id": w1, "job_id": c, "status": "queued", "attempt": 0, "charged": False},
        {"worker_id": w2, "job_id": None, "status": None, "attempt": None, "charged": None},
    ]
    result = RescueResult.from_rows(rows)
    assert result.workers == {w1, w2} and result.requeued == (a,) and result.failed == (b,)
    assert result.released == (c,)
    assert result.jobs == {a: 1, b: 3, c: 0} and bool(result) and not RescueResult.from_rows([])


def test_a_maintenance_run_that_left_work_goes_on_in_a_second_not_a_whole_interval():
    from djtasks.maintenance.pruner import PruneResult
    from djtasks.maintenance.runner import AGAIN_S, next_due

    left_work = PruneResult(succeeded=100_000, failed=0, complete=False)
    done = PruneResult(succeeded=10, failed=0, complete=True)
    assert next_due(100.0, 60.0, left_work, 0.5) == 100.0 + AGAIN_S
    assert next_due(100.0, 60.0, done, 0.5) == 160.0
    assert next_due(100.0, 60.0, None, 0.0) == 100.0 + 54.0  # skipped (lock held elsewhere): the jittered interval
    assert next_due(100.0, 60.0, object(), 1.0) == 100.0 + 66.0  # results without "complete" (the rescuer's)
    assert next_due(100.0, 0.5, left_work, 0.5) == 100.5  # never later than the interval itself
