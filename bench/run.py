"""djtasks benchmarks: enqueue rate, bulk enqueue rate, drain throughput and idle pick-up latency.

    python bench/run.py [--jobs 20000] [--processes 2] [--threads 4]

Starts its own durable PostgreSQL cluster (fsync on) unless DATABASE_URL is set, runs a real
``manage.py runworker`` subprocess, and prints one line per figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.tasks import noop  # noqa: E402
from djtasks.models import Job  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, value: float, unit: str) -> None:
    print(f"{name:<44} {value:>12,.1f} {unit}", flush=True)


def clear() -> None:
    Job.objects.all().delete()


def bench_single_enqueue(n: int) -> None:
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        noop.delay()  # autocommit: one transaction per job
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    report("enqueue .delay() (own transaction)", n / elapsed, "jobs/s")
    report("enqueue .delay() latency p50", percentile(latencies, 0.5) * 1000, "ms")
    report("enqueue .delay() latency p95", percentile(latencies, 0.95) * 1000, "ms")


def bench_bulk_enqueue(n: int) -> None:
    started = time.perf_counter()
    noop.bulk_delay([()] * n)
    report(f"bulk_delay of {n}", n / (time.perf_counter() - started), "jobs/s")


def start_worker(processes: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "runworker",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    from djtasks.models import Worker

    deadline = time.monotonic() + 60
    while Worker.objects.count() < processes:
        if time.monotonic() > deadline:
            raise SystemExit("worker did not start")
        time.sleep(0.1)
    return proc


def bench_drain(n: int, processes: int, threads: int) -> None:
    clear()
    noop.bulk_delay([()] * n)
    worker = start_worker(processes, threads)
    started = time.perf_counter()
    while Job.objects.filter(status__in=["queued", "running"]).exists():
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    report(f"drain {n} no-op jobs ({processes}x{threads})", n / elapsed, "jobs/s")
    latencies = []
    clear()
    for _ in range(200):
        with transaction.atomic():
            result = noop.delay()
            committed = timezone.now()  # just before COMMIT: the latency includes the commit itself
        while (job := Job.objects.filter(id=result.id).values("started_at").first())["started_at"] is None:
            time.sleep(0.0005)
        latencies.append((job["started_at"] - committed).total_seconds())
        time.sleep(0.01)
    report("idle pick-up latency p50 (commit -> start)", statistics.median(latencies) * 1000, "ms")
    report("idle pick-up latency p95 (commit -> start)", percentile(latencies, 0.95) * 1000, "ms")
    worker.terminate()
    worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--enqueue", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SHOW fsync")
        print(f"PostgreSQL {connection.pg_version}, fsync={cur.fetchone()[0]}, cpus={os.cpu_count()}")
    clear()
    bench_single_enqueue(args.enqueue)
    clear()
    bench_bulk_enqueue(args.jobs)
    bench_drain(args.jobs, args.processes, args.threads)


if __name__ == "__main__":
    main()
