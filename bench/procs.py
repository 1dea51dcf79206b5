"""What ``bench/scale.py`` and ``bench/soak.py`` share: real ``runworker``/``runbeat`` subprocesses, their
memory and CPU, and what the server sees (connections by application name, wait events, the cluster's CPU).

Importing it sets Django up (through ``bench.common``) on the benchmark cluster.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from bench.common import ROOT, psycopg_params
from djtasks.models import Worker

START_TIMEOUT_S = 90.0  # a loaded machine starts 8 runworkers slowly
STOP_TIMEOUT_S = 60.0


def spawn(
    command: str, *args: str, settings: str = "bench.settings", log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A ``manage.py <command>`` subprocess on the benchmark cluster (its own process group); its output goes
    to ``log`` when given (the soak's failing jobs log an error each), else to ours."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "BENCH_APP_NAME": f"django ({command})"}
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child keeps it open; closed with us
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), command, *args, "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=out,
        stderr=out,
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process (warm shutdown), then wait; SIGKILL what does not stop in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()


@contextlib.contextmanager
def runworkers(
    count: int, processes: int, threads: int, *, settings: str = "bench.settings", extra: tuple[str, ...] = ()
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` runworkers of ``processes`` x ``threads``, yielded once every worker process registered."""
    Worker.objects.all().delete()  # rows of earlier, stopped workers must not count as started ones
    args = ("--processes", str(processes), "--threads", str(threads), *extra)
    procs = [spawn("runworker", *args, settings=settings) for _ in range(count)]
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while Worker.objects.count() < count * processes:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise SystemExit(f"a runworker exited with {dead[0].returncode} while starting")
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} runworkers did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        yield procs
    finally:
        stop(procs)


def parent_pid(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def worker_owners(procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    """Worker id (as text) -> index of the runworker in ``procs`` whose supervisor forked that worker process."""
    index = {proc.pid: i for i, proc in enumerate(procs)}
    owners = {}
    for worker_id, pid in Worker.objects.values_list("id", "pid"):
        ppid = parent_pid(pid)
        if ppid in index:
            owners[str(worker_id)] = index[ppid]
    return owners


def rss_mb(pid: int) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return None


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def cluster_processes() -> list[psutil.Process]:
    """The benchmark cluster's server processes (its postmaster and every backend), not other clusters'."""
    datadir = os.environ.get("DJTASKS_TEST_PGDATA")
    if not datadir:  # DATABASE_URL given: an outside server, whose processes we cannot tell apart
        return []
    pid = int(Path(datadir, "postmaster.pid").read_text().split()[0])
    return process_tree(pid)


class CpuMeter:
    """CPU seconds used by the cluster's server processes and by given process trees between ``start()`` and
    ``stop()``; backends that come and go in between are counted while they lived long enough to be seen."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self._seen: dict[int, tuple[str, float, float]] = {}  # pid -> (group, CPU s at first sight, latest)
        self._t0 = time.monotonic()
        self._started = False

    def _scan(self) -> None:
        for group, procs in (("pg", cluster_processes()), ("w", [p for r in self.roots for p in process_tree(r)])):
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    now = t.user + t.system
                    # A process first seen after start() (a backend a worker opened meanwhile) was born
                    # inside the window: all its CPU counts.
                    born = 0.0 if self._started else now
                    first = self._seen.get(proc.pid, (group, born, now))[1]
                    self._seen[proc.pid] = (group, first, now)

    def start(self) -> None:
        self._scan()
        self._seen = {pid: (group, last, last) for pid, (group, _, last) in self._seen.items()}
        self._t0 = time.monotonic()
        self._started = True

    sample = _scan

    def stop(self) -> dict[str, float]:
        self._scan()
        wall = time.monotonic() - self._t0
        used = Counter[str]()
        for group, first, last in self._seen.values():
            used[group] += last - first
        return {
            "postgres_cores": used["pg"] / wall,
            "workers_cores": used["w"] / wall,
            "seconds": wall,
            "processes": Counter(group for group, _, _ in self._seen.values()),
        }


@dataclass
class ActivitySampler:
    """Samples ``pg_stat_activity`` on its own connection: connections by application name, and what the
    djtasks backends wait on (``wait_event_type``: Lock = a heavyweight lock such as a row lock,
    LWLock = internal buffer/WAL locks, IO, Client = idle waiting for the client)."""

    conn: psycopg.Connection = field(
        default_factory=lambda: psycopg.connect(**psycopg_params(), autocommit=True, application_name="bench")
    )
    waits: Counter = field(default_factory=Counter)
    lock_waiters: Counter = field(default_factory=Counter)
    active: int = 0
    samples: int = 0
    connections: list[Counter] = field(default_factory=list)

    def sample(self) -> Counter:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(nullif(a.application_name, ''), '(unnamed)'), a.state, a.wait_event_type,"
                " a.wait_event, CASE WHEN a.wait_event_type = 'Lock' THEN (SELECT string_agg(b.application_name"
                " || ': ' || left(b.query, 40), ' | ') FROM pg_stat_activity AS b"
                " WHERE b.pid = ANY(pg_blocking_pids(a.pid))) END"
                " FROM pg_stat_activity AS a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
                " AND a.backend_type = 'client backend'"
            )
            rows = cur.fetchall()
        by_app = Counter(row[0] for row in rows if row[0] != "bench")  # not this script's own
        self.connections.append(by_app)
        self.samples += 1
        for app, state, wtype, wevent, blockers in rows:
            if state == "active" and app.startswith(("djtasks-", "django (")):
                self.active += 1
                self.waits[f"{wtype}:{wevent}" if wtype else "CPU (no wait)"] += 1
                if wtype == "Lock":  # who waits on a heavyweight lock, and for what
                    self.lock_waiters[f"{app} {wevent}, held by {blockers}"] += 1
        return by_app

    def peak(self) -> Counter:
        """The largest count seen for each application name."""
        out: Counter = Counter()
        for sample in self.connections:
            for app, n in sample.items():
                out[app] = max(out[app], n)
        return out

    def lock_share(self) -> float:
        """Share of active-backend samples waiting on a heavyweight lock (row/tuple/transaction id)."""
        locks = sum(n for key, n in self.waits.items() if key.startswith("Lock:"))
        return locks / self.active if self.active else 0.0

    def close(self) -> None:
        self.conn.close()


def median_spread(values: list[float]) -> str:
    """``median (min-max)``, the way every sampled figure here is printed."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
