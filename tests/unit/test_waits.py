"""The mechanics written once: reconnect backoff, the wake-up pipe, durations and error entries."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from djtasks import durations
from djtasks.exceptions import WorkerLost
from djtasks.rows import error_entry
from djtasks.worker.waits import Backoff, WakePipe, wait_for_wake


def test_backoff_doubles_up_to_its_cap_and_resets():
    backoff = Backoff(0.1, 0.5)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


def test_wake_pipe_ends_a_wait_early_and_is_drained():
    pipe = WakePipe()
    try:
        threading.Timer(0.05, pipe.wake).start()
        began = time.monotonic()
        wait_for_wake(pipe, None, 10)
        assert time.monotonic() - began < 5
        for _ in range(100_000):  # a full pipe: a wake-up is already pending, nothing raises
            pipe.wake()
        wait_for_wake(pipe, None, 0)
        began = time.monotonic()
        wait_for_wake(pipe, None, 0.1)  # drained: this one sleeps its timeout
        assert time.monotonic() - began >= 0.09
    finally:
        pipe.close()


@pytest.mark.parametrize(("value", "expected"), [(3, 3.0), (0.5, 0.5), (timedelta(minutes=2), 120.0), (-1, -1.0)])
def test_durations_accept_seconds_and_timedeltas(value, expected):
    assert durations.seconds(value, "x") == expected


@pytest.mark.parametrize("value", [True, "5", None, float("nan"), float("inf"), [1]])
def test_durations_reject_everything_else_naming_the_option(value):
    with pytest.raises(TypeError, match="countdown must be a number of seconds"):
        durations.seconds(value, "countdown")


def test_error_entries_from_an_exception_and_as_a_template_for_sql():
    at = datetime(2026, 11, 29, tzinfo=UTC)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        entry = error_entry(exc, at=at, attempt=2)
    assert entry["type"] == "builtins.ValueError" and entry["message"] == "boom" and entry["attempt"] == 2
    assert "ValueError: boom" in entry["traceback"] and entry["at"] == at.isoformat()
    template = error_entry(WorkerLost, at=at)
    assert template == {"type": "djtasks.exceptions.WorkerLost", "message": "", "traceback": "", "at": at.isoformat()}
