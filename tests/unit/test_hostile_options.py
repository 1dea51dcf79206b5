"""Names, times and options the database could not take (or give back) are refused at the call, before any
SQL; so is a bad ``MAX_ARGS_BYTES`` setting, by the system checks. No database needed: nothing gets that far."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from djtasks import Job, Signature, inputs
from djtasks.conf import SettingError, parse
from djtasks.exceptions import SerializationError
from tests.testapp import tasks

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def noop() -> None:
    pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"countdown": 1e20}, ValueError, "countdown of 1e\\+20 s is too far ahead: .* before 9999-01-01"),
        ({"countdown": float("nan")}, TypeError, "countdown must be a number"),
        ({"countdown": float("inf")}, TypeError, "countdown must be a number"),
        ({"countdown": True}, TypeError, "countdown must be a number"),
        ({"countdown": timedelta(days=-1)}, ValueError, "must not be negative"),
        ({"countdown": timedelta(days=3_000_000)}, ValueError, "too far ahead"),
        ({"eta": datetime(9999, 12, 31, tzinfo=UTC)}, ValueError, "eta .* is too far ahead"),
        ({"eta": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))}, ValueError, "outside the range"),
        ({"eta": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}, ValueError, "outside the range"),
        ({"expires": float("nan")}, TypeError, "expires must be a number"),
        ({"expires": 1e300}, ValueError, "expires of 1e\\+300 s is too far ahead"),
        ({"expires": "soon"}, TypeError, "expires must be seconds, a timedelta or an aware datetime"),
        ({"expires": datetime(9999, 6, 1, tzinfo=UTC)}, ValueError, "expires .* is too far ahead"),
        ({"priority": 1.5}, TypeError, "priority must be an int"),
        ({"priority": "9"}, TypeError, "priority must be an int"),
        ({"priority": True}, TypeError, "priority must be an int"),
        ({"queue": ["default"]}, TypeError, "queue must be a string"),
        ({"queue": "default\x00"}, ValueError, "unknown queue 'default\\\\x00'"),
        ({"job_id": "\x00"}, ValueError, "job_id must be a UUID"),
        ({"time_limit": float("nan")}, TypeError, "time_limit must be a number"),
    ],
)
def test_apply_async_refuses_options_the_database_cannot_take(kwargs, error, message):
    with pytest.raises(error, match=f"tests.testapp.tasks.add.apply_async: (.* )?{message}"):
        tasks.add.apply_async(args=(1, 2), **kwargs)


def test_the_latest_time_accepted_is_stored_in_utc():
    latest = inputs.LATEST - timedelta(seconds=1)
    assert inputs.run_at("f", NOW, eta=latest) == latest
    shifted = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=14)))
    assert inputs.run_at("f", NOW, eta=shifted).tzinfo is UTC
    assert inputs.run_at("f", NOW, eta=datetime(1, 1, 1, tzinfo=UTC)) == NOW  # the past means now


def test_args_that_are_not_a_sequence_are_refused():
    with pytest.raises(TypeError, match="args must be a list or tuple, got str"):
        tasks.add.apply_async(args="12")
    with pytest.raises(SerializationError, match="kwargs must be a dict, got list"):
        tasks.add.apply_async(args=(1,), kwargs=[("b", 2)])


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"name": "bad\x00name"}, ImproperlyConfigured, "name 'bad\\\\x00name' contains a NUL"),
        ({"name": "n" * 256}, ImproperlyConfigured, "256 characters long; the column holds at most 255"),
        ({"name": "half \udc80"}, ImproperlyConfigured, "lone surrogate"),
        ({"max_attempts": 2**31}, ImproperlyConfigured, "max_attempts must be at most 2147483647"),
    ],
)
def test_job_options_the_database_cannot_take_are_refused_at_decoration(options, error, message):
    with pytest.raises(error, match=message):
        Job(noop, **options)


def test_unique_keys_with_nul_or_too_long_are_refused_at_the_call():
    assert inputs.check_unique_key("f", "report:7") == "report:7"
    with pytest.raises(ValueError, match=r"add.apply_async: unique_key 'a\\x00' contains a NUL"):
        tasks.add.apply_async((1, 2), unique_key="a\x00")
    with pytest.raises(ValueError, match="lone surrogate"):
        tasks.add.apply_async((1, 2), unique_key="\udc80")
    with pytest.raises(ValueError, match="501 characters long; the column holds at most 500"):
        tasks.add.apply_async((1, 2), unique_key="k" * 501)
    with pytest.raises(ValueError, match="must not be empty"):
        tasks.add.apply_async((1, 2), unique_key="")
    with pytest.raises(TypeError, match="unique_key must be a string"):
        tasks.add.apply_async((1, 2), unique_key=7)
    with pytest.raises(ValueError, match=r"add.s\(\.\.\.\).set: unique_key 'a\\x00' contains a NUL"):
        tasks.add.s(1, 2).set(unique_key="a\x00")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"MAX_ARGS_BYTES": 0}, "MAX_ARGS_BYTES.*from 1 to 268,435,455"),
        ({"MAX_ARGS_BYTES": 2**28}, "from 1 to 268,435,455"),
        ({"MAX_ARGS_BYTES": "1M"}, "got '1M'"),
        ({"MAX_ARGS_BYTES": True}, "got True"),
        ({"QUEUES": {"a\x00": {}}, "DEFAULT_QUEUE": "a\x00"}, "queue name 'a\\\\x00' contains a NUL"),
        ({"QUEUES": {"q" * 101: {}}, "DEFAULT_QUEUE": "q" * 101}, "at most 100"),
    ],
)
def test_bad_limits_and_queue_names_are_setting_errors(raw, message):
    with pytest.raises(SettingError, match=message):
        parse(raw)


def test_max_args_bytes_defaults_to_one_mib_and_is_checked_with_a_hint():
    assert parse({}).MAX_ARGS_BYTES == 1024 * 1024
    assert parse({"MAX_ARGS_BYTES": 4096}).MAX_ARGS_BYTES == 4096
    with override_settings(DJTASKS={"MAX_ARGS_BYTES": -1}):
        errors = [e for e in run_checks() if e.id.startswith("djtasks")]
    assert [e.id for e in errors] == ["djtasks.E009"]
    assert "1048576 (1 MiB)" in errors[0].hint


def test_beat_schedule_arguments_go_through_the_same_checks():
    schedule = {"s": {"job": "tests.testapp.tasks.tick", "every": 10, "kwargs": {"label": "a\x00"}}}
    with pytest.raises(SettingError, match=r"schedule 's': kwargs\['label'\] contains a NUL") as info:
        parse({"BEAT_SCHEDULE": schedule})
    assert info.value.check_id == "djtasks.E005"
    big = {"s": {"job": "tests.testapp.tasks.tick", "every": 10, "args": ["x" * 100]}}
    with pytest.raises(SettingError, match=r"args\[0\] is a string of 100 characters, more than the 50 bytes"):
        parse({"BEAT_SCHEDULE": big, "MAX_ARGS_BYTES": 50})
    with pytest.raises(SettingError, match="schedule name 'n\\\\x00' contains a NUL"):
        parse({"BEAT_SCHEDULE": {"n\x00": {"job": "tests.testapp.tasks.tick", "every": 10}}})


def test_signatures_refuse_bad_arguments_and_options_when_made():
    with pytest.raises(SerializationError, match=r"tests.testapp.tasks.echo.s: args\[0\] contains a NUL"):
        tasks.echo.s("a\x00")
    with pytest.raises(SerializationError, match=r"tests.testapp.tasks.echo.si: kwargs\['k'\]\[0\] contains a lone"):
        tasks.echo.si(k=["\ud800"])
    with pytest.raises(ValueError, match=r"echo.s\(\.\.\.\).set: countdown of 1e\+30 s is too far ahead"):
        tasks.echo.s(1).set(countdown=1e30)
    with pytest.raises(TypeError, match=r"echo.s\(\.\.\.\).set: unknown option\(s\) colour"):
        tasks.echo.s(1).set(colour="red")
    limited = override_settings(DJTASKS={"MAX_ARGS_BYTES": 64})
    with limited, pytest.raises(SerializationError, match=r"echo\.s: args take 67 bytes"):
        tasks.echo.s("x" * 30, "y" * 30)


def test_bulk_delay_names_the_bad_item_before_sending_anything():
    # No database here: a batch that got as far as COPY would fail on the missing connection instead.
    with pytest.raises(SerializationError, match=r"add.bulk_delay: item 2: args\[1\] contains a NUL"):
        tasks.add.bulk_delay([(1, 2), (3, 4), (5, "\x00")])
    made_by_hand = Signature(tasks.add.name, (1, 2), options={"countdown": 1e30})
    with pytest.raises(ValueError, match=r"add.bulk_delay: item 1: countdown of 1e\+30 s is too far ahead"):
        tasks.add.bulk_delay([(1, 2), made_by_hand])


def test_bulk_delay_items_nest_as_deep_as_delay_arguments():
    # Found by the bulk_delay property: an item's tuple is not a level of its arguments' nesting, as for delay.
    at_limit: object = None
    for _ in range(100):
        at_limit = [at_limit]
    with pytest.raises(SerializationError, match=r"item 1: args\[0\]\[0\].* is nested deeper than 100"):
        tasks.add.bulk_delay([(at_limit,), ([at_limit],)])
