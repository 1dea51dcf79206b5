"""Schedule definitions from code and settings: validated when made, with clear errors; no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from djtasks import periodic
from djtasks.conf import SettingError, djtasks_settings, parse
from djtasks.schedules import code_schedules, defined_schedules
from tests.testapp import tasks


@pytest.fixture
def scratch():
    """Names of code schedules a test adds; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        code_schedules.remove(name)


def test_stacked_decorator_registers_and_returns_the_job(scratch):
    from djtasks import job

    @periodic(cron="*/5 * * * *", tz="Europe/Paris", name="unit-stacked", args=[1], kwargs={"b": 2})
    @job(name="unit.stacked")
    def stacked(a, b):
        return a + b

    scratch.append("unit-stacked")
    assert stacked(1, 2) == 3 and stacked.name == "unit.stacked"
    definition = {d.name: d for d in code_schedules.all()}["unit-stacked"]
    assert (definition.job, definition.cron, definition.tz, definition.source) == (
        "unit.stacked",
        "*/5 * * * *",
        "Europe/Paris",
        "code",
    )
    assert definition.args == "[1]" and definition.kwargs == '{"b":2}'


def test_function_form_with_timedelta_and_default_name(scratch):
    assert periodic(tasks.add, every=timedelta(minutes=2), args=(1, 2)) is tasks.add
    scratch.append(tasks.add.name)
    definition = {d.name: d for d in code_schedules.all()}[tasks.add.name]
    assert definition.every == 120 and definition.tz is None and definition.catch_up == "skip"


def test_same_definition_twice_is_idempotent_but_a_clash_is_an_error(scratch):
    periodic(tasks.add, every=60, name="unit-twice")
    scratch.append("unit-twice")
    periodic(tasks.add, every=60, name="unit-twice")  # e.g. module imported again
    with pytest.raises(ImproperlyConfigured, match="defined twice"):
        periodic(tasks.add, every=30, name="unit-twice")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * * *"}, "expected 5"),
        ({"cron": "* * * * *", "every": 5}, "exactly one of cron=, every= or at="),
        ({}, "exactly one"),
        ({"at": datetime(2030, 1, 1, 9)}, "naive datetime"),  # naive: the point of the test
        ({"every": 0}, "at least 1"),
        ({"every": "5"}, "seconds"),
        ({"cron": "* * * * *", "tz": "Paris"}, "unknown time zone"),
        ({"every": 5, "catch_up": "some"}, "catch_up must be one of"),
        ({"every": 5, "expires": -1}, "expires must be positive"),
        ({"every": 5, "priority": 500}, "priority must be between"),
        ({"every": 5, "args": {"a": 1}}, "args must be a list"),
        ({"every": 5, "kwargs": {"when": object()}}, "kwargs"),
    ],
)
def test_bad_code_definitions_raise_at_definition_time(options, message):
    with pytest.raises(ImproperlyConfigured, match=message) as info:
        periodic(tasks.add, name="unit-bad", **options)
    assert "unit-bad" in str(info.value)
    assert "unit-bad" not in {d.name for d in code_schedules.all()}


def test_periodic_on_a_plain_function_or_unknown_name_is_rejected():
    with pytest.raises(TypeError, match="put @periodic above @job"):

        @periodic(every=5)
        def plain():
            pass

    with pytest.raises(ImproperlyConfigured, match=r"no job named .nope\.nothing."):
        periodic("nope.nothing", every=5)


def test_settings_schedule_is_parsed_into_definitions():
    conf = parse(
        {
            "BEAT_SCHEDULE": {
                "nightly-report": {
                    "job": "tests.testapp.tasks.echo",
                    "cron": "0 3 * * *",
                    "args": [1],
                    "kwargs": {"x": 1},
                    "queue": "other",
                    "priority": 5,
                    "tz": "Europe/Paris",
                },
                "heartbeat": {"job": "tests.testapp.tasks.tick", "every": timedelta(seconds=30), "unique": True},
                "launch": {"job": "tests.testapp.tasks.tick", "at": datetime(2030, 1, 1, tzinfo=UTC)},
            }
        }
    )
    nightly, heartbeat, launch = conf.BEAT_SCHEDULE.values()
    assert (nightly.cron, nightly.tz, nightly.queue, nightly.priority, nightly.source) == (
        "0 3 * * *",
        "Europe/Paris",
        "other",
        5,
        "settings",
    )
    assert heartbeat.every == 30 and heartbeat.unique and launch.at == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"job": "x.y", "cron": "99 * * * *"}, "'bad': invalid cron expression"),
        ({"cron": "* * * * *"}, "needs 'job'"),
        ({"job": "x.y", "every": 5, "crn": "x"}, "unknown key"),
        ({"job": "x.y", "at": datetime(2030, 1, 1)}, "naive"),  # naive: the point of the test
        ("every 5", "must be a dict"),
    ],
)
def test_bad_settings_schedule_is_a_setting_error_with_its_own_check_id(entry, message):
    with pytest.raises(SettingError, match=message) as info:
        parse({"BEAT_SCHEDULE": {"bad": entry}})
    assert info.value.check_id == "djtasks.E005"


def djtasks_errors():
    return [e for e in run_checks() if e.id.startswith("djtasks")]


def test_system_checks_for_settings_schedules():
    with override_settings(
        DJTASKS={**_base(), "BEAT_SCHEDULE": {"bad": {"job": "tests.testapp.tasks.tick", "cron": "* * *"}}}
    ):
        errors = djtasks_errors()
    assert [e.id for e in errors] == ["djtasks.E005"]
    assert "expected 5" in errors[0].msg and "README" in errors[0].hint

    with override_settings(
        DJTASKS={**_base(), "BEAT_SCHEDULE": {"typo": {"job": "tests.testapp.tasks.tik", "every": 5}}}
    ):
        errors = djtasks_errors()
    assert [e.id for e in errors] == ["djtasks.E006"]
    assert "tests.testapp.tasks.tik" in errors[0].msg and "tests.testapp.tasks.tick" in errors[0].hint

    schedule = {"q": {"job": "tests.testapp.tasks.tick", "every": 5, "queue": "nowhere"}}
    with override_settings(DJTASKS={**_base(), "BEAT_SCHEDULE": schedule}):
        errors = djtasks_errors()
    assert [e.id for e in errors] == ["djtasks.E007"] and "'nowhere'" in errors[0].msg


def _base():
    return {"QUEUES": {"default": {}, "other": {}, "slow": {}}}


def test_settings_override_code_by_name():
    code_names = {d.name: d for d in code_schedules.all()}
    assert "testapp-rare" in code_names  # tests/testapp/tasks.py
    settings_defs = parse({"BEAT_SCHEDULE": {"testapp-rare": {"job": "tests.testapp.tasks.tick", "every": 60}}})
    merged = {d.name: d for d in defined_schedules(settings_defs.BEAT_SCHEDULE)}
    assert merged["testapp-rare"].source == "settings" and merged["testapp-rare"].every == 60
    assert "testapp-settings" in djtasks_settings.BEAT_SCHEDULE  # tests/settings.py
