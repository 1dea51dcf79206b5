"""Shared fixtures. The database is a real PostgreSQL cluster started by tests/settings.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from signal import SIGTERM  # the class below has a method named signal
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def subprocess_env() -> dict[str, str]:
    """Environment for manage.py subprocesses: the same cluster, pointed at the test database."""
    from django.db import connection

    url = urlsplit(os.environ["DATABASE_URL"])
    test_url = urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))
    return {**os.environ, "DATABASE_URL": test_url, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}


class ManagedProcess:
    """A real ``manage.py <command>`` subprocess in its own session; its output goes to a log file shown on
    failure."""

    def __init__(self, tmp_path: Path, command: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = tmp_path / f"{command}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), command, *args],
            cwd=ROOT,
            env={**subprocess_env(), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, signum: int | None = SIGTERM, timeout: float = 60) -> int | None:
        """Send ``signum`` (``None``: it was sent already), wait for the exit code, SIGKILL past ``timeout``."""
        if self.proc.poll() is None:
            if signum is not None:
                self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """Start ``runworker`` subprocesses with the given arguments; all are stopped after the test."""
    started: list[ManagedProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ManagedProcess:
        worker = ManagedProcess(tmp_path, "runworker", *args, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        sys.stderr.write(f"--- {worker.log_path.name}\n{worker.log[-5000:]}\n")


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def make_schedule(name: str = "s", **fields):
    """A ``Schedule`` row as the admin would save it: the testapp's ``tick`` every 10 s, in UTC; ``fields``
    override (tests pass their own ``next_fire_at``)."""
    from djtasks.models import Schedule

    values = {"job_name": "tests.testapp.tasks.tick", "interval_seconds": 10.0, "timezone": "UTC", "source": "admin"}
    values.update(fields)
    return Schedule.objects.create(name=name, **values)


def drain(queues=("default", "other", "slow"), limit: int = 10) -> int:
    """Claim, run and record every due job in this process, the way a worker does; returns jobs run."""
    from django.utils import timezone

    from djtasks.ids import uuid7
    from djtasks.worker.db import WorkerConnection
    from djtasks.worker.executor import execute

    db = WorkerConnection()
    worker_id = uuid7()
    ran = 0
    try:
        while True:
            rows = db.store.job_claim_many(now=timezone.now(), worker_id=worker_id, queues=queues, limit=limit)
            if not rows:
                return ran
            outcomes = [execute(row, worker_id=worker_id) for row in rows if row["status"] == "running"]
            ran += len(outcomes)
            db.store.job_finish_many(worker_id=worker_id, outcomes=outcomes)
    finally:
        db.close()


@pytest.fixture
def store():
    from djtasks.worker.db import WorkerConnection

    db = WorkerConnection()
    yield db.store
    db.close()


def free_tcp_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    from devtools.pgbouncer import free_port

    return free_port()


@pytest.fixture(scope="session")
def pgbouncers(django_db_setup) -> Iterator:
    """``pgbouncers(mode)``: a private PgBouncer (``devtools/pgbouncer.py``) in ``transaction`` or ``session``
    pool mode in front of the test cluster, started once per test run and mode. Never skipped: without the
    ``pgbouncer`` binary the tests that need it fail, saying how to install it. Stopped before the test database
    is dropped (its pooled server connections would keep it open)."""
    from django.conf import settings

    from devtools.pgbouncer import PgBouncer

    started: dict[str, PgBouncer] = {}
    database = settings.DATABASES["default"]

    def get(mode: str) -> PgBouncer:
        if mode not in started:
            # django-environ keeps a unix socket directory (?host=...) in OPTIONS
            host = database.get("HOST") or database.get("OPTIONS", {}).get("host") or "/var/run/postgresql"
            bouncer = PgBouncer(host, pool_mode=mode, server_port=int(database.get("PORT") or 5432))
            bouncer.start()
            started[mode] = bouncer
        return started[mode]

    yield get
    for bouncer in started.values():
        bouncer.cleanup()


def pooled_env(
    bouncer,
    *,
    listen_database: str = "",
    listen: bool = True,
    poll_interval: float | None = None,
    pool_mode: str | None = None,
) -> dict[str, str]:
    """Environment for ``manage.py`` subprocesses whose ``default`` alias goes through ``bouncer`` (settings:
    ``tests/settings_pgbouncer.py``), with ``direct`` the direct alias to name in ``listen_database``;
    ``POOL_MODE`` is the bouncer's unless ``pool_mode`` says otherwise (``""``: not set)."""
    from django.db import connection

    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings_pgbouncer",
        "DJTASKS_TEST_POOLER_URL": bouncer.url(connection.settings_dict["NAME"]),
        "DJTASKS_TEST_POOL_MODE": bouncer.pool_mode if pool_mode is None else pool_mode,
        "DJTASKS_TEST_LISTEN_DATABASE": listen_database,
        "DJTASKS_TEST_LISTEN": "1" if listen else "0",
        "DJTASKS_TEST_POLL_INTERVAL": "" if poll_interval is None else str(poll_interval),
    }
