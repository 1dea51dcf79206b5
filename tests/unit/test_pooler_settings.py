"""``LISTEN_DATABASE`` and ``POOL_MODE``: parsing, what they decide, and the system checks that read them (settings
only: no database is contacted, so the checks also run with the database down)."""

from __future__ import annotations

import warnings

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from djtasks.conf import SettingError, parse

DIRECT = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "db.internal", "PORT": "5432"}
POOLED = {**DIRECT, "HOST": "pgbouncer.internal", "PORT": "6432", "DISABLE_SERVER_SIDE_CURSORS": True}


def djtasks_checks(djtasks: dict, databases: dict | None = None) -> list:
    databases = databases or {"default": POOLED, "direct": DIRECT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Overriding DATABASES": no query runs here
        with override_settings(DATABASES=databases, DJTASKS={**settings.DJTASKS, **djtasks}):
            return [e for e in run_checks() if e.id.startswith("djtasks")]


def ids(found: list) -> list[str]:
    return [e.id for e in found]


@pytest.mark.parametrize(
    ("djtasks", "listen_alias", "prepared"),
    [
        ({}, "default", True),
        ({"LISTEN": False}, None, False),
        ({"POOL_MODE": "session"}, "default", True),
        ({"POOL_MODE": "transaction"}, None, False),  # polls; prepared statements off by default
        ({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}, "direct", False),
        ({"POOL_MODE": "transaction", "PREPARED_STATEMENTS": True}, None, True),  # PgBouncer >= 1.21
        ({"LISTEN_DATABASE": "direct", "LISTEN": False}, None, False),  # LISTEN off wins
    ],
)
def test_where_listen_runs_and_whether_statements_are_prepared(djtasks, listen_alias, prepared):
    conf = parse(djtasks)
    assert conf.listen_alias == listen_alias
    assert conf.prepared_statements is prepared


@pytest.mark.parametrize(
    ("djtasks", "check_id", "words"),
    [
        ({"LISTEN_DATABASE": 5}, "djtasks.E020", "must be a database alias"),
        ({"LISTEN_DATABASE": ""}, "djtasks.E020", "must be a database alias"),
        ({"POOL_MODE": "statement"}, "djtasks.E021", "statement pooling cannot run djtasks"),
        ({"POOL_MODE": "transactions"}, "djtasks.E021", "must be 'transaction', 'session' or None"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(djtasks, check_id, words):
    with pytest.raises(SettingError) as caught:
        parse(djtasks)
    assert caught.value.check_id == check_id and words in str(caught.value)
    assert str(caught.value).startswith(f"DJTASKS[{next(iter(djtasks))!r}]")
    assert ids(djtasks_checks(djtasks)) == [check_id]


def test_a_listen_database_that_does_not_exist_is_an_error_with_a_hint_naming_the_setting():
    (error,) = djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "drect"})
    assert error.id == "djtasks.E022" and error.is_serious()
    assert "DJTASKS['LISTEN_DATABASE'] is 'drect', which is not in DATABASES" in error.msg
    assert "default, direct" in error.hint and "LISTEN_DATABASE" in error.hint


def test_a_listen_database_that_is_not_postgresql_is_an_error():
    databases = {"default": POOLED, "direct": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    found = djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}, databases)
    assert ids(found) == ["djtasks.E003"] and "'direct'" in found[0].msg


@pytest.mark.parametrize("listen_database", ["default", "pooled_too"])
def test_a_listen_database_reaching_the_pooler_is_a_warning(listen_database):
    databases = {"default": POOLED, "pooled_too": {**POOLED, "NAME": "other"}}
    (warning,) = djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": listen_database}, databases)
    assert warning.id == "djtasks.W022" and not warning.is_serious()
    assert "transaction-mode pooler" in warning.msg and "directly" in warning.hint


def test_addresses_given_in_options_are_compared_too():
    pooled = {**DIRECT, "HOST": "", "PORT": "", "OPTIONS": {"host": "/run/pgbouncer", "port": "6432"}}
    direct = {**DIRECT, "HOST": "", "PORT": "", "OPTIONS": {"host": "/run/postgresql"}}
    databases = {"default": {**pooled, "DISABLE_SERVER_SIDE_CURSORS": True}, "direct": direct, "same": pooled}
    assert djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}, databases) == []
    assert ids(djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "same"}, databases)) == ["djtasks.W022"]


def test_listen_through_a_transaction_pooler_without_listen_database_is_a_warning():
    (warning,) = djtasks_checks({"POOL_MODE": "transaction"})
    assert warning.id == "djtasks.W020"
    assert "poll every POLL_INTERVAL" in warning.msg and "LISTEN_DATABASE" in warning.hint
    assert djtasks_checks({"POOL_MODE": "transaction", "LISTEN": False}) == []  # polling is meant
    assert djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}) == []


def test_prepared_statements_forced_on_through_a_transaction_pooler_is_a_warning():
    found = djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct", "PREPARED_STATEMENTS": True})
    assert ids(found) == ["djtasks.W021"] and "1.21" in found[0].msg


def test_server_side_cursors_left_on_through_a_transaction_pooler_is_a_warning():
    databases = {"default": {**POOLED, "DISABLE_SERVER_SIDE_CURSORS": False}, "direct": DIRECT}
    found = djtasks_checks({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}, databases)
    assert ids(found) == ["djtasks.W023"] and "DISABLE_SERVER_SIDE_CURSORS" in found[0].hint


def test_session_pooling_and_direct_connections_need_nothing():
    assert djtasks_checks({"POOL_MODE": "session"}) == []
    assert djtasks_checks({"POOL_MODE": "session", "LISTEN_DATABASE": "direct"}) == []
    assert djtasks_checks({"LISTEN_DATABASE": "direct"}) == []
