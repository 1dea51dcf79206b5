"""What metrics cost: the no-op drain with ``runworker --metrics-port`` against without it, and the database
gauges' read (one scrape's statements) on a table holding a million finished jobs.

    python bench/metrics.py [--jobs 20000] [--rounds 3] [--processes 2] [--threads 4] [--history 1000000]

Each round drains with metrics off and on, in alternating order, so a change of load on the machine
or the order itself hits both alike; the ratio is over
all rounds. The scrape after each metrics-on drain must count exactly the jobs drained (a sanity check, not
a figure). The gauge read is timed ``--reads`` times on a table of ``--history`` finished rows and a backlog
of ``--backlog`` due jobs, after VACUUM ANALYZE, with the plans printed.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bench.common import clear_jobs, database_info, percentile, report, vacuum_jobs
from bench.run import fill_history, prepare_backlog, running_worker, wait_drained
from bench.tasks import noop
from djtasks.cursors import django_store
from djtasks.metrics.database import read
from djtasks.store import queries

GAUGE_QUERIES = ("queue_stats_waiting", "queue_stats_running", "queue_stats_workflow_waiting", "job_stats_estimate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def finished_in_scrape(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("djtasks_jobs_finished_total{")
    )


def drain(n: int, processes: int, threads: int, *, metrics: bool) -> float:
    clear_jobs()
    prepare_backlog(n)
    since = timezone.now()
    port = free_port()
    extra = ("--metrics-port", str(port), "--metrics-address", "127.0.0.1") if metrics else ()
    with running_worker(processes, threads, *extra) as worker:
        rate = wait_drained(worker, since, n)["rate"]
        if metrics:
            deadline = time.monotonic() + 10
            while (seen := finished_in_scrape(port)) != n and time.monotonic() < deadline:
                time.sleep(0.2)  # each process ships about once a second
            if seen != n:
                raise SystemExit(f"the scrape counted {seen:.0f} finished jobs, {n} ran")
    return rate


def bench_drain_cost(n: int, rounds: int, processes: int, threads: int) -> dict[str, float]:
    off: list[float] = []
    on: list[float] = []
    for i in range(rounds):
        for metrics in (False, True) if i % 2 == 0 else (True, False):  # each goes first in every other round
            (on if metrics else off).append(drain(n, processes, threads, metrics=metrics))
        print(f"  round {i + 1}: off {off[-1]:.0f} jobs/s, on {on[-1]:.0f} jobs/s", flush=True)
    return {"off": statistics.mean(off), "on": statistics.mean(on), "ratio": statistics.mean(on) / statistics.mean(off)}


def bench_gauge_read(history: int, backlog: int, reads: int) -> dict[str, float]:
    clear_jobs()
    fill_history(history)
    noop.bulk_delay([()] * backlog)
    vacuum_jobs()
    store = django_store()
    times = []
    for _ in range(reads):
        began = time.perf_counter()
        snapshot = read(store, now=timezone.now(), worker_timeout=30)
        times.append(time.perf_counter() - began)
    with connection.cursor() as cur:
        for name in GAUGE_QUERIES:
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries()[name], {"now": timezone.now()})
            raw = cur.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
            print(f"  {name}: {plan['Execution Time']:.2f} ms, top node {plan['Plan']['Node Type']}", flush=True)
    finished = sum(snapshot.finished_estimate.values())
    print(f"  finished estimate {finished:,} (exact {history:,}); queued {snapshot.jobs.get(('default', 'queued'))}")
    return {"p50_ms": statistics.median(times) * 1000, "p95_ms": percentile(times, 0.95) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--history", type=int, default=1_000_000, help="finished rows for the gauge read (0: skip)")
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    info = database_info()
    print(f"{info['postgres_version']}, cpus={info['cpus']}, load average {info['loadavg'][0]:.2f}", flush=True)
    cost = bench_drain_cost(args.jobs, args.rounds, args.processes, args.threads)
    report(f"drain {args.jobs} no-op jobs, metrics off", cost["off"], "jobs/s")
    report(f"drain {args.jobs} no-op jobs, --metrics-port", cost["on"], "jobs/s")
    report("  ... on / off", 100 * cost["ratio"], "%")
    if args.history:
        gauges = bench_gauge_read(args.history, args.backlog, args.reads)
        report(f"gauge read, {args.history:,} finished + {args.backlog:,} due, p50", gauges["p50_ms"], "ms")
        report("gauge read p95", gauges["p95_ms"], "ms")


if __name__ == "__main__":
    main()
