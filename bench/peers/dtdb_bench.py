"""django-tasks-db: single ``.enqueue()`` rate, drain of N no-op tasks by ``db_worker``, idle pick-up latency.

    python -m bench.peers.dtdb_bench [--jobs 20000] [--enqueue 2000] [--samples 200] [--processes 2]

Uses the cluster in ``DATABASE_URL`` (``bench/run.py --peers`` passes its own; alone, this starts a durable
throwaway cluster) with a database of its own, ``<name>_dtdb``. ``db_worker`` runs one task at a time and
has no process or thread option, so a 2-core deployment is 2 ``db_worker`` processes; they keep the default
``--interval 1`` (seconds between polls when idle) and skip the random start-up delay. Progress goes to
stderr; the last stdout line is ``RESULT {json}``.

Measured as djtasks is in ``bench/run.py``: the drain runs from the earliest ``started_at`` (claim time,
written by the worker) to the moment a watcher polling every 5 ms sees no READY or RUNNING row left, and
every task must be SUCCESSFUL; the pick-up latency runs from just before the enqueueing transaction's COMMIT
to the task's ``started_at``. Because db_worker polls, the pause between pick-up samples is random (10 ms
plus up to one interval), so each enqueue lands at a random point of the polling cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent.parent
DRAIN_POLL_S = 0.005
PICKUP_POLL_S = 0.005  # the latency comes from started_at; polling only notices it (db_worker takes ~0.5 s)
PICKUP_GAP_S = 0.01
PICKUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 900.0
WORKER_STOP_TIMEOUT_S = 30.0
DEFAULT_INTERVAL_S = 1.0  # db_worker's own default


def log(msg: str) -> None:
    print(f"django-tasks-db: {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prepare_database() -> None:
    """Create ``<name>_dtdb`` next to the benchmark database and point the settings at it."""
    import psycopg

    if not os.environ.get("DATABASE_URL"):
        from devtools.localpg import throwaway_cluster

        throwaway_cluster("djtasks_bench", durable=True)
    base = os.environ["DATABASE_URL"]
    parts = urlsplit(base)
    name = parts.path.lstrip("/") + "_dtdb"
    with psycopg.connect(base, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["BENCH_DTDB_DATABASE_URL"] = urlunsplit(parts._replace(path="/" + name))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peers.dtdb_settings"


def start_workers(processes: int, interval: float) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "db_worker",
                "--queue-name",
                "default",
                "--interval",
                str(interval),
                "--no-startup-delay",
                "--worker-id",
                f"bench-{i}",
                "--verbosity",
                "0",
            ],
            cwd=ROOT,
            env=env,
            stdout=sys.stderr,
        )
        for i in range(processes)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_alive(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is not None:
            raise SystemExit(f"db_worker exited with {proc.returncode}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models import Min
    from django.utils import timezone
    from django_tasks_db.compat import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from bench.peers.dtdb_tasks import noop

    call_command("migrate", verbosity=0)
    table = DBTaskResult._meta.db_table

    def sql(statement: str) -> None:
        with connection.cursor() as cur:
            cur.execute(statement)

    out: dict[str, Any] = {}
    sql(f"TRUNCATE {table}")
    for _ in range(10):  # warm the connection and the task's import path outside the timing
        noop.enqueue()
    sql(f"TRUNCATE {table}")
    sql("CHECKPOINT")  # as bench/run.py does before each phase: no earlier phase's pages flushed on our time
    latencies = []
    started = time.perf_counter()
    for _ in range(args.enqueue):
        t0 = time.perf_counter()
        noop.enqueue()  # autocommit: one transaction per task, as djtasks' .delay() is timed
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    out["delay"] = {
        "rate": args.enqueue / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "jobs": args.enqueue,
    }
    log(f".enqueue() {out['delay']['rate']:,.0f} jobs/s")

    # drain: no bulk API, so the backlog is N .enqueue() calls in one transaction, then ANALYZE
    sql(f"TRUNCATE {table}")
    started = time.perf_counter()
    with transaction.atomic():
        for _ in range(args.jobs):
            noop.enqueue()
    out["enqueue_backlog"] = {"rate": args.jobs / (time.perf_counter() - started), "jobs": args.jobs}
    sql(f"ANALYZE {table}")
    sql("CHECKPOINT")
    log(f"{args.jobs} enqueued; starting {args.processes} db_worker processes")
    since = timezone.now()
    workers = start_workers(args.processes, args.interval)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        # READY has a partial index; RUNNING has none, so look for it only once READY is gone
        for status in (TaskResultStatus.READY, TaskResultStatus.RUNNING):
            while DBTaskResult.objects.filter(status=status).exists():
                check_alive(workers)
                if time.monotonic() > deadline:
                    raise SystemExit(f"drain did not finish within {DRAIN_TIMEOUT_S:.0f} s")
                time.sleep(DRAIN_POLL_S)
        ended = time.time()
        drained = DBTaskResult.objects.filter(started_at__gte=since)
        first = drained.aggregate(first=Min("started_at"))["first"]
        succeeded = drained.filter(status=TaskResultStatus.SUCCESSFUL).count()
        if succeeded != args.jobs:
            raise SystemExit(f"django-tasks-db drain: {succeeded} of {args.jobs} succeeded")
        elapsed = ended - first.timestamp()
        out["drain"] = {"rate": args.jobs / elapsed, "seconds": elapsed, "jobs": args.jobs}
        log(f"drain {out['drain']['rate']:,.0f} jobs/s")

        sql(f"TRUNCATE {table}")
        picks = []
        for _ in range(args.samples):
            with transaction.atomic():
                result = noop.enqueue()
                committed = timezone.now()  # just before COMMIT, as in bench/run.py
            deadline = time.monotonic() + PICKUP_TIMEOUT_S
            while (row := DBTaskResult.objects.filter(id=result.id).values("started_at").first())["started_at"] is None:
                check_alive(workers)
                if time.monotonic() > deadline:
                    raise SystemExit("pick-up: no db_worker started the task within 30 s")
                time.sleep(PICKUP_POLL_S)
            picks.append((row["started_at"] - committed).total_seconds())
            # db_worker polls: back to back, every sample would land just after both workers' polls and
            # wait a whole interval. A random pause puts each enqueue at a random point of the cycle.
            time.sleep(PICKUP_GAP_S + random.uniform(0, args.interval))
        out["pickup"] = {
            "p50_ms": statistics.median(picks) * 1000,
            "p95_ms": percentile(picks, 0.95) * 1000,
            "samples": args.samples,
        }
        log(f"pick-up p50 {out['pickup']['p50_ms']:.1f} ms")
    finally:
        stop_workers(workers)
    from importlib.metadata import version

    out["versions"] = {"django-tasks-db": version("django-tasks-db"), "django": django.get_version()}
    out["settings"] = f"{args.processes} db_worker processes, --interval {args.interval:g}, persistent connections"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--enqueue", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2, help="db_worker processes (one task at a time each)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="db_worker --interval")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    prepare_database()
    out = run(args)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
