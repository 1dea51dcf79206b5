"""``job_failed`` is sent for every job that fails for good, whichever process records the failure: the worker
process for an exception, the supervisor for a hard time limit and for a worker process that died."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def test_job_failed_reaches_receivers_for_exceptions_time_limits_and_dead_processes(start_worker, tmp_path):
    log = tmp_path / "signals.log"
    log.touch()
    worker = start_worker("--processes", "1", "--threads", "2", env={"DJTASKS_TEST_SIGNAL_LOG": str(log)})
    raised = tasks.boom.delay("for good")
    overdue = tasks.overdue.delay(60)  # time_limit=1.5 s, one attempt
    wait_until(lambda: len(log.read_text().splitlines()) >= 2, timeout=90, message="two job_failed signals")
    # alone in its process (a process that dies takes the attempts of the jobs it was running with it)
    died = tasks.hard_exit.delay(3)  # os._exit on both of its 2 attempts
    jobs = {raised.id: "raised", overdue.id: "overdue", died.id: "died"}
    wait_until(lambda: len(log.read_text().splitlines()) >= 3, timeout=90, message="three job_failed signals")
    lines = {}
    for line in log.read_text().splitlines():
        name, job_id, attempt, error_type, exception_type, pid = line.split()
        lines[jobs[uuid.UUID(job_id)]] = (name, int(attempt), error_type, exception_type, int(pid))
    assert set(lines) == {"raised", "overdue", "died"}, lines  # each once
    assert lines["raised"][:4] == (tasks.boom.name, 1, "builtins.ValueError", "ValueError")
    assert lines["raised"][4] != worker.proc.pid  # sent by the worker process that ran it
    assert lines["overdue"] == (
        tasks.overdue.name,
        1,
        "djtasks.exceptions.TimeLimitExceeded",
        "TimeLimitExceeded",
        worker.proc.pid,  # by the supervisor, which killed the process running it
    )
    assert lines["died"][:3] == (tasks.hard_exit.name, 2, "djtasks.exceptions.WorkerLost")
    assert lines["died"][4] == worker.proc.pid  # the supervisor, which saw the process die
    assert worker.stop() == 0
    assert len(log.read_text().splitlines()) == 3  # nothing more
