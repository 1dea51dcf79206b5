"""Maintenance locks through a real transaction-mode PgBouncer: held by the transaction doing the work, gone at its
commit, and never stranded on a pooled server connection when the client that took it vanishes. Also the
pooler probe the workers use at start-up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from djtasks.maintenance.pruner import Pruner
from djtasks.maintenance.runner import MaintenanceRunner
from djtasks.models import Job
from djtasks.worker.db import WorkerConnection
from djtasks.worker.listener import through_pooler
from tests.conftest import ROOT, pooled_env, subprocess_env, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pooled(pgbouncers) -> Iterator[str]:
    """A database alias reaching the test database through the transaction-mode PgBouncer."""
    bouncer = pgbouncers("transaction")
    default = connections.settings["default"]
    options = {key: value for key, value in default["OPTIONS"].items() if key != "host"}
    connections.settings["pooled"] = {
        **default,
        "HOST": "127.0.0.1",
        "PORT": str(bouncer.port),
        "NAME": connection.settings_dict["NAME"],
        "OPTIONS": options,
    }
    yield "pooled"
    del connections.settings["pooled"]


def advisory_locks() -> int:
    with connection.cursor() as cur:  # the direct connection sees every server session's locks
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return cur.fetchone()[0]


def test_the_lock_is_exclusive_through_the_pooler_and_released_at_commit(pooled):
    first, second = WorkerConnection(pooled), WorkerConnection(pooled)
    try:
        with first.store.maintenance_locked(name="rescuer") as held:
            assert held
            with second.store.maintenance_locked(name="rescuer") as other:
                assert not other, "two clients of the pooler never both hold a service's lock"
            assert advisory_locks() == 1
        assert advisory_locks() == 0, "released at commit: no pooled server connection keeps it"
        with second.store.maintenance_locked(name="rescuer") as other:
            assert other
    finally:
        first.close()
        second.close()


HOLD_THE_LOCK = """
import sys, time
import django
django.setup()
from djtasks.maintenance.runner import MaintenanceRunner

class Stuck:
    name = "rescuer"
    interval = 1.0

    def run_once(self, now):
        print("holding the lock", flush=True)
        time.sleep(600)

MaintenanceRunner().run_service(Stuck())
"""


def test_a_runner_killed_mid_run_strands_no_lock_on_a_pooled_connection(pgbouncers):
    """A supervisor SIGKILLed while its maintenance runs through the pooler: the lock must not stay on the
    pooled server connection (the issue's rescue that never came)."""
    env = {**subprocess_env(), **pooled_env(pgbouncers("transaction"))}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding the lock"
        assert advisory_locks() == 1
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: advisory_locks() == 0, timeout=15, message="the lock to go with the killed client's transaction")


def test_every_client_of_the_pooler_can_take_the_lock_in_turn(pooled):
    runners = [MaintenanceRunner(pooled) for _ in range(3)]  # on whichever server connections the pooler lends

    class Quick:
        name = "rescuer"
        interval = 1.0

        def run_once(self, now):
            return "ran"

    try:
        assert [runner.run_service(Quick()) for runner in runners * 2] == ["ran"] * 6
        assert advisory_locks() == 0
    finally:
        for runner in runners:
            runner.db.close()


def test_the_pruner_prunes_through_the_pooler_in_locked_batches(pooled):
    results = tasks.add.bulk_delay([(1, 1)] * 30)
    Job.objects.filter(id__in=[r.id for r in results]).update(
        status="succeeded", finished_at=timezone.now() - timedelta(days=2)
    )
    runner = MaintenanceRunner(pooled)
    try:
        result = runner.run_service(Pruner(runner.store))
    finally:
        runner.db.close()
    assert result.succeeded == 30 and not Job.objects.exists()
    assert advisory_locks() == 0


def test_the_probe_tells_a_pooled_connection_from_a_direct_one(pooled):
    through, direct = WorkerConnection(pooled), WorkerConnection()
    try:
        assert through_pooler(through) is True
        assert through_pooler(direct) is False
    finally:
        through.close()
        direct.close()
