"""What the benchmark scripts share: Django on the benchmark cluster, the job table's state, numbers out.

Importing this module sets Django up with ``bench.settings``, which starts a durable (fsync on) throwaway
PostgreSQL cluster unless ``DATABASE_URL`` is set, and exports its URL so that every subprocess the
benchmarks start (workers, peer drivers) reaches the same cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

from django.db import DatabaseError, connection  # noqa: E402

JOB_TABLE = "djtasks_job"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank: what p50/p95 mean in every figure here."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, value: float, unit: str) -> None:
    print(f"{name:<52} {value:>12,.1f} {unit}", flush=True)


def database_info() -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit'), version()")
        fsync, sync_commit, version = cur.fetchone()
    return {
        "postgres": connection.pg_version,
        "postgres_version": version.split(" (")[0].split(",")[0],
        "fsync": fsync,
        "synchronous_commit": sync_commit,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "loadavg": os.getloadavg(),
    }


def clear_jobs() -> None:
    """Empty the job table (TRUNCATE: every measurement starts from the same clean table, no dead rows)."""
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {JOB_TABLE}")


def analyze_jobs() -> None:
    """Refresh the planner's statistics, as autovacuum would: the plans measured are the plans it gets."""
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {JOB_TABLE}")


def vacuum_jobs() -> None:
    """VACUUM (ANALYZE) the job table: the state autovacuum leaves a freshly loaded table in. Without it,
    the insert-triggered autovacuum of a million new rows would run during the next timing."""
    with connection.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {JOB_TABLE}")


def checkpoint() -> None:
    """Flush dirty pages now, so that one phase's writes are not paid for during the next phase's timing
    (skipped where the role may not CHECKPOINT, e.g. a non-superuser on an external server); then have the
    kernel write back what it still holds (WAL segments, the files of a dropped table), which would otherwise
    compete with the next phase's commit flushes."""
    try:
        with connection.cursor() as cur:
            cur.execute("CHECKPOINT")
    except DatabaseError:
        pass
    os.sync()


def psycopg_params() -> dict[str, Any]:
    """Plain psycopg ``connect()`` arguments for the benchmark database: Django's own, less what is Django's
    (its cursor class, its adapters) and less its ``prepare_threshold=None``, so a bare connection keeps
    psycopg's defaults (server-side binding, statements prepared after a few runs), and less its
    ``application_name``: each caller names its own connection."""
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "application_name"):
        params.pop(key, None)
    return params


LOOP_START_TIMEOUT_S = 60.0  # how long the loops of run_loops wait for each other at the start
LOOP_DRAIN_TIMEOUT_S = 900.0


def run_loops(target: Callable[..., None], args: tuple[Any, ...], processes: int, label: str) -> dict[str, float]:
    """Run ``target(*args, barrier, out)`` in ``processes`` forked processes (they use only psycopg, never this
    process's connection): each waits at ``barrier`` (``LOOP_START_TIMEOUT_S``), drains, and puts ``(started,
    ended, done)`` on ``out``. Returns the first start, the last end and the jobs done in all."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=LOOP_START_TIMEOUT_S + LOOP_DRAIN_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"{label} process exited with {proc.exitcode}")
    return {
        "started": min(r[0] for r in results),
        "ended": max(r[1] for r in results),
        "done": sum(r[2] for r in results),
    }
