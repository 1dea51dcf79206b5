"""What flow control costs: the drain rate of a queue limited to a large concurrency vs the same queue unlimited.

    python bench/flow.py [--jobs 20000] [--processes 2] [--threads 4] [--rounds 2] [--concurrency 1000]

A limit of 1000 never binds with 8 threads, so the difference is the limited claim itself: a transaction that
locks the queue's ``djtasks_queue`` row, counts the running jobs and claims at most the idle threads (no
jobs claimed ahead), plus one NOTIFY per batch of outcomes. Rounds alternate (unlimited, limited, ...) so a
machine that gets busier during the run weighs on both. The unlimited figure is the plain drain of
``bench/run.py``: the limited path adds nothing to it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.utils import timezone

from bench.common import clear_jobs, database_info, report
from bench.run import prepare_backlog, running_worker, wait_drained
from djtasks.models import Queue
from djtasks.queues import set_queue_options


def drain_once(n: int, processes: int, threads: int, concurrency: int | None) -> float:
    clear_jobs()
    Queue.objects.all().delete()
    if concurrency is not None:
        set_queue_options("default", concurrency=concurrency)
    prepare_backlog(n)
    since = timezone.now()
    with running_worker(processes, threads) as worker:
        rate = wait_drained(worker, since, n)["rate"]
    Queue.objects.all().delete()
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="drains of each kind, alternating")
    parser.add_argument("--concurrency", type=int, default=1000, help="the limited queue's concurrency")
    args = parser.parse_args(argv)
    call_command("migrate", verbosity=0)
    info = database_info()
    print(f"{info['postgres_version']}, cpus={info['cpus']}, load average {info['loadavg'][0]:.2f}", flush=True)
    plain, limited = [], []
    for _ in range(args.rounds):
        plain.append(drain_once(args.jobs, args.processes, args.threads, None))
        limited.append(drain_once(args.jobs, args.processes, args.threads, args.concurrency))
    shape = f"{args.jobs} no-op jobs, {args.processes}x{args.threads}"
    report(f"drain, unlimited queue ({shape})", statistics.median(plain), "jobs/s")
    report(f"drain, concurrency {args.concurrency} ({shape})", statistics.median(limited), "jobs/s")
    report("  ... limited / unlimited", 100 * statistics.median(limited) / statistics.median(plain), "%")
    print(f"  (rounds: unlimited {[round(r) for r in plain]}, limited {[round(r) for r in limited]})", flush=True)


if __name__ == "__main__":
    main()
