"""``django.tasks`` on djtasks: drain of N no-op ``@task`` jobs through ``DatabaseBackend`` vs N no-op ``@job``
jobs, and vs django-tasks-db's ``db_worker`` draining N no-op ``@task`` tasks, in the same run (Django 6+).

    python bench/tasks_backend.py [--jobs 20000] [--enqueue 2000] [--processes 2] [--threads 4] [--no-dtdb]

Each drain is measured as in ``bench/run.py`` (from the first claim to the moment a watcher sees nothing
queued or running, every job succeeded), with a fresh ``runworker`` per drain. The ``@job`` backlog is made
with ``bulk_delay`` and the ``@task`` backlog with ``.enqueue()`` in one transaction (``django.tasks`` has no
bulk API); both are ANALYZEd and CHECKPOINTed before the drain. Single enqueues are timed one per
transaction, ``.delay()`` and ``.enqueue()`` alternating in rounds so machine noise hits both alike.
django-tasks-db runs through ``bench/peers/dtdb_bench.py`` (its own database on the same cluster; its default
1 s polling, 2 ``db_worker`` processes), skipped with a message when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from bench.common import ROOT, analyze_jobs, checkpoint, clear_jobs, database_info, report
from bench.run import bench_drain, running_worker, wait_drained
from bench.tasks import noop

ROUNDS = 10  # alternating rounds of single enqueues
DTDB_ARGS = ("--enqueue", "200", "--samples", "3")  # its drain is the figure; its enqueue and pick-up kept short


def bench_task_drain(n: int, processes: int, threads: int) -> dict[str, Any]:
    from bench.django_tasks import noop_task

    clear_jobs()
    started = time.perf_counter()
    with transaction.atomic():
        for _ in range(n):
            noop_task.enqueue()
    backlog = {"rate": n / (time.perf_counter() - started), "jobs": n}
    analyze_jobs()
    checkpoint()
    since = timezone.now()
    with running_worker(processes, threads) as worker:
        drain = wait_drained(worker, since, n)
    return {"drain": drain, "enqueue_backlog": backlog}


def bench_single_enqueues(n: int) -> dict[str, float]:
    """``.delay()`` vs ``.enqueue()``, each in its own transaction, ``n`` of each in alternating rounds."""
    from bench.django_tasks import noop_task

    clear_jobs()
    checkpoint()
    spent = {"delay": 0.0, "enqueue": 0.0}
    per_round = max(1, n // ROUNDS)
    for _ in range(ROUNDS):
        for name, call in (("delay", noop.delay), ("enqueue", noop_task.enqueue)):
            started = time.perf_counter()
            for _ in range(per_round):
                call()
            spent[name] += time.perf_counter() - started
    clear_jobs()
    total = per_round * ROUNDS
    return {"delay": total / spent["delay"], "enqueue": total / spent["enqueue"], "jobs": total}


def bench_dtdb(n: int, processes: int) -> dict[str, Any] | None:
    """django-tasks-db's own drain (``bench/peers/dtdb_bench.py``), or None when it is not installed."""
    try:
        import django_tasks_db  # noqa: F401
    except ImportError:
        print("django-tasks-db is not installed (pip install django-tasks-db): its drain is skipped", flush=True)
        return None
    proc = subprocess.run(
        [sys.executable, "-m", "bench.peers.dtdb_bench", *DTDB_ARGS, "--jobs", str(n), "--processes", str(processes)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--enqueue", type=int, default=2_000, help="single .delay() and .enqueue() calls, each")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--no-dtdb", action="store_true", help="skip django-tasks-db")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    args = parser.parse_args()
    if django.VERSION < (6, 0):
        raise SystemExit(f"django.tasks needs Django 6; this is Django {django.get_version()}")
    call_command("migrate", verbosity=0)
    info = database_info()
    print(f"{info['postgres_version']}, cpus={info['cpus']}, load average {info['loadavg'][0]:.2f}", flush=True)
    out: dict[str, Any] = {"machine": info}
    out["single"] = s = bench_single_enqueues(args.enqueue)
    report(f"@job .delay() in its own transaction ({s['jobs']})", s["delay"], "jobs/s")
    report(f"@task .enqueue() in its own transaction ({s['jobs']})", s["enqueue"], "jobs/s")
    out["job"] = bench_drain(args.jobs, args.processes, args.threads)
    report(f"drain {args.jobs} no-op @job ({args.processes}x{args.threads})", out["job"]["drain"]["rate"], "jobs/s")
    out["task"] = bench_task_drain(args.jobs, args.processes, args.threads)
    report(f"drain {args.jobs} no-op @task via DatabaseBackend", out["task"]["drain"]["rate"], "jobs/s")
    report("  ... @task / @job", 100 * out["task"]["drain"]["rate"] / out["job"]["drain"]["rate"], "%")
    if not args.no_dtdb and (dtdb := bench_dtdb(args.jobs, args.processes)) is not None:
        out["dtdb"] = dtdb
        report(
            f"drain {args.jobs} no-op @task, django-tasks-db db_worker x{args.processes}",
            dtdb["drain"]["rate"],
            "jobs/s",
        )
        report("  ... djtasks @task / django-tasks-db", out["task"]["drain"]["rate"] / dtdb["drain"]["rate"], "x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
