"""Signal payloads (decoded result and error, the exception) and ``sender`` filtering, as a worker sends them."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import signals
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received():
    """Connect a recorder to ``signal`` (optionally for one sender); disconnected after the test."""
    connected = []
    calls: dict[str, list[dict]] = {}

    def connect(signal, label, sender=None):
        def receiver(sender, **kwargs):
            calls.setdefault(label, []).append({"sender": sender, **kwargs})

        signal.connect(receiver, sender=sender, weak=False)
        connected.append((signal, receiver, sender))
        return calls.setdefault(label, [])

    yield connect
    for signal, receiver, sender in connected:
        signal.disconnect(receiver, sender=sender)


def test_job_finished_carries_the_decoded_result(received):
    finished = received(signals.job_finished, "finished")
    result = tasks.build_report.delay(7)
    drain()
    (call,) = finished
    assert call["sender"] is tasks.build_report and call["job_id"] == result.id
    assert call["status"] == "succeeded" and call["result"] == {"report": 7} and call["error"] is None


def test_job_retrying_then_job_failed_carry_the_error_and_the_exception(received):
    retrying = received(signals.job_retrying, "retrying")
    failed = received(signals.job_failed, "failed")
    finished = received(signals.job_finished, "finished")
    result = tasks.only_keyerror_retries.delay("key")  # max_attempts=3, retry_delay=0
    drain()
    assert [c["attempt"] for c in retrying] == [1, 2] and [c["attempt"] for c in failed] == [3]
    error = failed[0]["error"]
    assert error["type"] == "builtins.KeyError" and error["message"] == "'nope'" and error["attempt"] == 3
    assert "Traceback" in error["traceback"]
    assert isinstance(failed[0]["exception"], KeyError) and isinstance(retrying[0]["exception"], KeyError)
    assert retrying[0]["run_at"] is not None and retrying[0]["error"]["attempt"] == 1
    assert [c["status"] for c in finished] == ["queued", "queued", "failed"]
    assert finished[-1]["error"] == error and failed[0]["job_id"] == result.id


def test_job_failed_is_not_sent_for_a_success_or_a_retry(received):
    failed = received(signals.job_failed, "failed")
    tasks.add.delay(1, 2)
    tasks.asks_retry.delay()  # retries once, then succeeds
    drain()
    assert failed == []


def test_connecting_with_a_sender_receives_only_that_job(received):
    boom_failures = received(signals.job_failed, "boom", sender=tasks.boom)
    add_failures = received(signals.job_failed, "add", sender=tasks.add)
    add_finished = received(signals.job_finished, "add finished", sender=tasks.add)
    tasks.boom.delay("for boom only")
    tasks.add.delay(1, 1)
    drain()
    assert [c["error"]["message"] for c in boom_failures] == ["for boom only"]
    assert boom_failures[0]["sender"] is tasks.boom
    assert add_failures == [] and [c["result"] for c in add_finished] == [2]


def test_a_job_no_worker_registered_fails_with_its_name_as_sender(received):
    failed = received(signals.job_failed, "failed")
    djtasks.enqueue("elsewhere.tasks.job")
    drain()
    (call,) = failed
    assert call["sender"] == "elsewhere.tasks.job" and call["error"]["type"] == "djtasks.exceptions.NotRegistered"


def test_a_failing_receiver_never_fails_the_job(received):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.job_finished.connect(broken, weak=False)
    try:
        result = tasks.add.delay(2, 2)
        drain()
    finally:
        signals.job_finished.disconnect(broken)
    assert result.get(timeout=1) == 4
