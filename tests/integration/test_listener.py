"""The LISTEN side of the producer and the beat (``worker/listener.py``) on real connections: a dedicated
``LISTEN_DATABASE`` connection that wakes the loop, one that cannot be reached (the loop polls and tries again
later), and the start-up summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings

from djtasks.conf import parse
from djtasks.store import Store
from djtasks.worker import listener as listener_module
from djtasks.worker.db import WorkerConnection
from djtasks.worker.listener import Listener, wakeup_summary
from djtasks.worker.waits import WakePipe
from tests.conftest import free_tcp_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alias() -> Iterator:
    """``alias(name, **params)`` adds a database alias like ``default`` with ``params`` changed."""
    added = []

    def add(name: str, **params) -> str:
        connections.settings[name] = {**connections.settings["default"], "NAME": connection.settings_dict["NAME"]}
        connections.settings[name].update(params)
        added.append(name)
        return name

    yield add
    for name in added:
        del connections.settings[name]


def notify(channel: str = "djtasks", payload: str = "default") -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def test_a_dedicated_listen_connection_wakes_the_loop_and_is_used_for_nothing_else(alias):
    alias("listen_direct")
    own = WorkerConnection()
    pipe = WakePipe()
    with override_settings(DJTASKS={**djtasks_settings_raw(), "LISTEN_DATABASE": "listen_direct"}):
        listener = Listener(own, enabled=True, subscribe=Store.queue_listen, role="test")
        try:
            listener.ensure()
            assert listener.listening
            assert own._conn is None, "the loop's own connection was not even opened"
            started = time.monotonic()
            listener.wait(pipe, 0.3)  # nothing sent: the whole timeout
            assert time.monotonic() - started >= 0.25
            notify()
            started = time.monotonic()
            listener.wait(pipe, 10)
            assert time.monotonic() - started < 5, "woken by the notification"
        finally:
            listener.close()
            own.close()


def test_an_unreachable_listen_database_leaves_the_loop_polling_and_is_tried_again(alias, caplog, monkeypatch):
    alias("listen_nowhere", HOST="127.0.0.1", PORT=str(free_tcp_port()), OPTIONS={"connect_timeout": 2})
    own = WorkerConnection()
    with override_settings(DJTASKS={**djtasks_settings_raw(), "LISTEN_DATABASE": "listen_nowhere"}):
        listener = Listener(own, enabled=True, subscribe=Store.queue_listen, role="test")
        try:
            with caplog.at_level(logging.WARNING, logger="djtasks.worker"):
                listener.ensure()  # no exception: the loop goes on
            assert not listener.listening
            assert "LISTEN connection to 'listen_nowhere' failed" in caplog.text and "polling" in caplog.text
            started = time.monotonic()
            listener.wait(WakePipe(), 0.2)  # a plain timed wait: the poll
            assert time.monotonic() - started >= 0.15
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="djtasks.worker"):
                listener.ensure()
            assert caplog.text == "", "not tried again before the pause is over"
        finally:
            listener.close()
        monkeypatch.setattr(listener_module, "RETRY_S", 0.0)
        listener = Listener(own, enabled=True, subscribe=Store.queue_listen, role="test")
        try:
            with caplog.at_level(logging.WARNING, logger="djtasks.worker"):
                listener.ensure()
                listener.ensure()
            assert caplog.text.count("LISTEN connection to 'listen_nowhere' failed") == 2, "tried again after the pause"
        finally:
            listener.close()
            own.close()


def test_without_listen_database_it_listens_on_the_loops_own_connection_or_not_at_all():
    own = WorkerConnection()
    try:
        listener = Listener(own, enabled=True, subscribe=Store.queue_listen)
        listener.ensure()
        assert listener.listening and own._conn is not None
        listener.reset()  # the loop's connection failed: LISTEN again on the next one
        assert not listener.listening
        with override_settings(DJTASKS={**djtasks_settings_raw(), "POOL_MODE": "transaction"}):
            assert not Listener(own, enabled=True, subscribe=Store.queue_listen).enabled
        assert not Listener(own, enabled=False, subscribe=Store.queue_listen).enabled
    finally:
        own.close()


def test_the_start_up_summary_says_how_new_work_is_noticed():
    assert wakeup_summary(parse({"LISTEN": False}))[1].startswith("LISTEN is off: polling for new jobs every 1 s")
    level, text = wakeup_summary(parse({"POOL_MODE": "transaction", "POLL_INTERVAL": 2}))
    assert level == logging.WARNING and "polling for new jobs every 2 s" in text and "LISTEN_DATABASE" in text
    level, text = wakeup_summary(parse({"POOL_MODE": "transaction", "LISTEN_DATABASE": "direct"}))
    assert level == logging.INFO and "direct connection of its own to 'direct'" in text
    assert wakeup_summary(parse({}))[1].startswith("listening for new jobs on 'default'")


def djtasks_settings_raw() -> dict:
    return dict(settings.DJTASKS)


def test_connection_backend_pid_and_connection_timezone_utc(store):
    db = WorkerConnection()
    try:
        assert db.store.connection_backend_pid() == db.connection.info.backend_pid  # direct: the same process
        with db.connection.cursor() as cur:
            cur.execute("SET TIME ZONE 'America/New_York'")
        db.store.connection_timezone_utc()
        assert db.connection.info.parameter_status("TimeZone") in ("UTC", "Etc/UTC")
    finally:
        db.close()


def test_without_start_up_options_the_session_is_put_in_utc_after_connecting(alias):
    """With POOL_MODE set djtasks sends no start-up options (PgBouncer refuses them): the time zone is SET once
    connected instead, which PgBouncer keeps for this client on every server connection it lends (it tracks
    TimeZone). Here the site's own options start sessions in another zone, as a postgresql.conf may."""
    options = dict(connections.settings["default"]["OPTIONS"])
    options["options"] = "-c TimeZone=Asia/Tokyo"
    alias("tokyo", OPTIONS=options)
    with override_settings(DJTASKS={**djtasks_settings_raw(), "POOL_MODE": "transaction"}):
        db = WorkerConnection("tokyo", durable=False)
    try:
        # nothing of djtasks' own added: no TimeZone, no synchronous_commit (claims commit durably)
        assert db._params["options"] == "-c TimeZone=Asia/Tokyo"
        assert db.connection.info.parameter_status("TimeZone") in ("UTC", "Etc/UTC")
    finally:
        db.close()
