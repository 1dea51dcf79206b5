"""Time limit options (validated at decoration and at each call) and the soft limit machinery (no database)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

import djtasks
from djtasks import job
from djtasks.exceptions import SoftTimeLimitExceeded
from djtasks.registry import registry
from djtasks.worker.limits import SoftLimiter
from tests.testapp import tasks


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"time_limit": 0}, ImproperlyConfigured, "time_limit must be a positive number"),
        ({"time_limit": -5}, ImproperlyConfigured, "time_limit must be a positive number"),
        ({"time_limit": "10"}, TypeError, "time_limit must be a number of seconds"),
        ({"time_limit": True}, TypeError, "time_limit"),
        ({"time_limit": float("inf")}, TypeError, "time_limit"),
        ({"soft_time_limit": 0.0}, ImproperlyConfigured, "soft_time_limit must be a positive number"),
        ({"soft_time_limit": 10, "time_limit": 10}, ImproperlyConfigured, "soft_time_limit .10 s. must be less than"),
        ({"soft_time_limit": 20, "time_limit": 10}, ImproperlyConfigured, "must be less than time_limit"),
    ],
)
def test_bad_time_limits_at_decoration_name_job_and_option(options, error, message):
    with pytest.raises(error, match=message) as info:
        job(name="tests.bad_limits", **options)(lambda: None)
    assert "tests.bad_limits" in str(info.value)
    assert "tests.bad_limits" not in registry


def test_good_time_limits_are_kept_as_seconds():
    j = job(name="tests.limited", time_limit=timedelta(minutes=5), soft_time_limit=240)(lambda: None)
    try:
        assert (j.time_limit, j.soft_time_limit) == (300.0, 240.0)
        assert (tasks.add.time_limit, tasks.add.soft_time_limit) == (None, None)
    finally:
        registry.unregister("tests.limited")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"time_limit": -1}, ValueError, "time_limit must be a positive number"),
        ({"soft_time_limit": "x"}, TypeError, "soft_time_limit must be a number"),
        ({"time_limit": 1, "soft_time_limit": 2}, ValueError, "soft_time_limit .2 s. must be less than time_limit"),
        # the call's soft limit against the job's own hard limit
        ({"soft_time_limit": 10}, ValueError, "must be less than time_limit .5 s."),
    ],
)
def test_bad_time_limits_at_call_name_job_and_option(kwargs, error, message):
    limited = job(name="tests.limited_call", time_limit=5)(lambda: None)
    try:
        with pytest.raises(error, match=message) as info:
            limited._row((), {}, timezone.now(), **kwargs)
        assert "tests.limited_call.apply_async" in str(info.value)
    finally:
        registry.unregister("tests.limited_call")


def test_call_overrides_the_jobs_limits():
    limited = job(name="tests.limited_row", time_limit=60, soft_time_limit=50)(lambda: None)
    try:
        assert limited._row((), {}, timezone.now())["time_limit"] == 60
        row = limited._row((), {}, timezone.now(), time_limit=5, soft_time_limit=2)
        assert (row["time_limit"], row["soft_time_limit"]) == (5, 2)
    finally:
        registry.unregister("tests.limited_row")


def test_soft_time_limit_exceeded_is_exported_and_catchable():
    assert djtasks.SoftTimeLimitExceeded is SoftTimeLimitExceeded
    assert issubclass(SoftTimeLimitExceeded, Exception)
    assert str(SoftTimeLimitExceeded()) == "soft time limit exceeded"


def _run_in_thread(target):
    box = {}

    def runner():
        try:
            box["value"] = target()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=runner)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return box


def test_soft_limit_interrupts_a_busy_loop_and_lets_it_clean_up():
    limiter = SoftLimiter()
    limiter.start()
    try:

        def work():
            guard = limiter.arm("busy", 0.2)
            started = time.monotonic()
            try:
                while True:
                    sum(range(100))
            except SoftTimeLimitExceeded:
                return time.monotonic() - started
            finally:
                guard.disarm()

        box = _run_in_thread(work)
        assert 0.15 <= box["value"] < 2.0, box
    finally:
        limiter.stop()


def test_soft_limit_reaches_a_sleeping_job_when_the_sleep_returns():
    """The documented limit: a blocking C call is not interrupted; the exception comes right after it."""
    limiter = SoftLimiter()
    limiter.start()
    try:

        def work():
            guard = limiter.arm("sleeper", 0.1)
            try:
                time.sleep(0.5)
                for _ in range(1000):
                    pass
                return "not interrupted"
            finally:
                guard.disarm()

        box = _run_in_thread(work)
        assert isinstance(box.get("error"), SoftTimeLimitExceeded)
    finally:
        limiter.stop()


def test_disarmed_guard_never_fires_into_later_code():
    limiter = SoftLimiter()
    limiter.start()
    try:

        def work():
            guard = limiter.arm("quick", 0.2)
            guard.disarm()
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:  # well past the soft limit, in "worker" code
                pass
            return "clean"

        assert _run_in_thread(work) == {"value": "clean"}
    finally:
        limiter.stop()
