import warnings
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from djtasks.conf import SettingError, djtasks_settings, parse


def test_defaults():
    conf = parse(None)
    assert conf.DATABASE == "default"
    assert list(conf.QUEUES) == ["default"]
    assert conf.HEARTBEAT_INTERVAL == 5 and conf.WORKER_TIMEOUT == 30 and conf.rescue_interval == 5
    assert conf.RESULT_TTL == 86400 and conf.FAILED_RESULT_TTL == 7 * 86400
    assert conf.LISTEN is True and conf.POLL_INTERVAL == 1


def test_prepared_statements_follow_listen_unless_set():
    assert parse(None).prepared_statements is True
    assert parse({"LISTEN": False}).prepared_statements is False
    assert parse({"LISTEN": False, "PREPARED_STATEMENTS": True}).prepared_statements is True
    assert parse({"PREPARED_STATEMENTS": False}).prepared_statements is False


def test_durations_accept_timedelta():
    conf = parse({"RESULT_TTL": timedelta(hours=2), "POLL_INTERVAL": 0.5})
    assert conf.RESULT_TTL == 7200 and conf.POLL_INTERVAL == 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"NOPE": 1}, "unknown setting"),
        ({"POLL_INTERVAL": "1"}, "expected seconds"),
        ({"POLL_INTERVAL": -1}, "must not be negative"),
        ({"POLL_INTERVAL": 0}, "greater than zero"),
        ({"RESCUE_INTERVAL": 0}, "greater than zero"),
        ({"QUEUES": {}}, "non-empty"),
        ({"QUEUES": {"a": {"concurrency": 0}}, "DEFAULT_QUEUE": "a"}, "concurrency"),
        ({"QUEUES": {"a": {"speed": 1}}}, "unknown option"),
        ({"DEFAULT_QUEUE": "missing"}, "not one of QUEUES"),
        ({"HEARTBEAT_INTERVAL": 30, "WORKER_TIMEOUT": 10}, "longer than HEARTBEAT_INTERVAL"),
        ({"LISTEN": "yes"}, "True or False"),
        ({"PREPARED_STATEMENTS": "yes"}, "True, False or None"),
        ("not a dict", "must be a dict"),
    ],
)
def test_bad_settings_are_rejected(raw, message):
    with pytest.raises(SettingError, match=message):
        parse(raw)


def test_settings_are_read_lazily_and_follow_override_settings():
    with override_settings(DJTASKS={"QUEUES": {"default": {}, "x": {}}, "POLL_INTERVAL": 3}):
        assert djtasks_settings.POLL_INTERVAL == 3
        assert "x" in djtasks_settings.QUEUES
    assert djtasks_settings.POLL_INTERVAL == 0.2  # tests/settings.py


def test_system_check_reports_bad_setting_with_hint():
    with override_settings(DJTASKS={"QUEUES": {"default": {}}, "TYPO": 1}):
        errors = [e for e in run_checks() if e.id.startswith("djtasks")]
    assert [e.id for e in errors] == ["djtasks.E001"]
    assert "TYPO" in errors[0].msg and "known settings" in errors[0].hint


def test_system_check_requires_postgresql():
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Overriding DATABASES": no query runs here
        with override_settings(DATABASES=databases):
            errors = [e for e in run_checks() if e.id.startswith("djtasks")]
    assert "djtasks.E003" in [e.id for e in errors]


def test_system_check_flags_job_on_unknown_queue():
    with override_settings(DJTASKS={"QUEUES": {"default": {}}}):
        errors = [e for e in run_checks() if e.id.startswith("djtasks")]
    # tests.testapp.tasks.on_other uses queue "other"
    assert any(e.id == "djtasks.E004" and "'other'" in e.msg for e in errors)


def test_the_lazy_settings_declare_every_setting_with_its_type():
    """``djtasks_settings.X`` is typed for type checkers by annotations on the lazy object: they must match the
    settings dataclass, and reading each gives the parsed value."""
    import typing

    from djtasks.conf import DjtasksSettings, _LazySettings

    declared = typing.get_type_hints(_LazySettings)
    fields = typing.get_type_hints(DjtasksSettings)
    assert {k: v for k, v in declared.items() if k.isupper()} == fields
    assert declared["rescue_interval"] is float and declared["prepared_statements"] is bool
    for name in [*fields, "rescue_interval", "prepared_statements"]:
        assert getattr(djtasks_settings, name) == getattr(djtasks_settings.get(), name)
