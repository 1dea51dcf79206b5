"""Scale: drain throughput as worker processes and runworkers are added on one PostgreSQL, and real jobs
against Celery + Redis.

    python bench/scale.py                      # every part, 3 samples each
    python bench/scale.py --parts processes,runworkers --jobs 20000 --samples 3
    python bench/scale.py --parts orm --orm-jobs 5000 --conn-max-age 0,60 --celery-concurrency 2,8
    python bench/scale.py --quick              # small and 1 sample: checks that everything works

Parts:

- ``processes``: one ``runworker --processes P --threads 4`` for P = 1, 2, 4, 8, draining ``--jobs`` no-op
  jobs enqueued in advance (timed as ``bench/run.py`` times its drain: first claim to "nothing queued or
  running").
- ``runworkers``: R = 1, 2, 4, 8 ``runworker --processes 1 --threads 4`` at once on the same backlog, with each
  runworker's share of the jobs (``worker_id`` of every finished row, mapped to the runworker that forked it).
  One process each, so R runworkers are R worker processes as in ``processes``, plus R supervisors (each with
  its maintenance thread contending for the advisory locks).

  For both: the CPU the cluster's server processes and the workers used during the drain (cores = CPU s /
  wall s: on 2 cores, the two together cannot pass 2), and ``pg_stat_activity`` sampled every 50 ms: the share
  of active djtasks backends waiting on a heavyweight lock (``wait_event_type = 'Lock'``: row, tuple or
  transaction-id locks; a convoy shows here) and the connections open by application name.
- ``orm``: ``--orm-jobs`` real jobs (``bench/workload.py``: one ORM insert and one ORM update, each its own
  transaction) drained by djtasks (``runworker --processes 2 --threads 4``) and by Celery (``celery worker
  --pool prefork --concurrency C`` on its own ``redis-server``), alternately, with Django's ``CONN_MAX_AGE`` 0
  (a connection per job) and 60 (kept). Rate = jobs / (last row's ``updated_at`` - first row's ``created_at``),
  the job body's own clock for both systems.

Samples are interleaved (every configuration once, then again) so that a change of load on the shared machine
hits all of them; figures are the median of the samples with the range in brackets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from bench.common import ROOT, analyze_jobs, clear_jobs, database_info
from bench.models import Record
from bench.procs import ActivitySampler, CpuMeter, median_spread, runworkers, stop, worker_owners
from bench.run import prepare_backlog, wait_drained
from bench.tasks import insert_and_update
from djtasks.models import Queue
from djtasks.queues import pause_queue, resume_queue

ACTIVITY_EVERY_S = 0.05
DRAIN_TIMEOUT_S = 900.0
SWEEP = [1, 2, 4, 8]


class Watch(threading.Thread):
    """Samples pg_stat_activity and the processes' CPU in the background while a drain runs."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.activity = ActivitySampler()
        self.cpu = CpuMeter(roots)
        self._halt = threading.Event()

    def run(self) -> None:
        ticks = 0
        while not self._halt.wait(ACTIVITY_EVERY_S):
            self.activity.sample()
            ticks += 1
            if ticks % 10 == 0:  # every 0.5 s: see backends opened meanwhile
                self.cpu.sample()

    def start(self) -> None:
        self.cpu.start()
        super().start()

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        out = {**self.cpu.stop(), "lock_share": self.activity.lock_share(), "peak": self.activity.peak()}
        out["waits"] = self.activity.waits
        out["lock_waiters"] = self.activity.lock_waiters
        self.activity.close()
        return out


def gated(count: int, processes: int, threads: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Runworkers that start on the backlog together: the queue is paused while they start (a paused queue
    is not claimed from) and resumed once every worker process registered, so the first runworker up does
    not drain alone while the eighth is still importing Django. Resumed, the queue has no limit: its claims
    are the plain ``job_claim_many``."""
    pause_queue("default")
    try:
        with runworkers(count, processes, threads) as procs:
            resume_queue("default")
            yield procs
    finally:
        Queue.objects.all().delete()


def drain(n: int, count: int, processes: int, threads: int) -> dict[str, Any]:
    """One drain of ``n`` no-op jobs by ``count`` runworkers of ``processes`` x ``threads``."""
    clear_jobs()
    prepare_backlog(n)
    since = timezone.now()
    with gated(count, processes, threads) as procs:
        owners = worker_owners(procs)
        watch = Watch([p.pid for p in procs])
        watch.start()
        out = wait_drained(procs, since, n)
        out.update(watch.finish())
        shares = Counter[int]()
        with connection.cursor() as cur:
            cur.execute("SELECT worker_id::text, count(*) FROM djtasks_job GROUP BY worker_id")
            for worker_id, jobs in cur.fetchall():
                shares[owners.get(worker_id, -1)] += jobs
        out["shares"] = [shares[i] / n for i in range(count)]
        out["unowned"] = shares[-1]
    return out


def sweep(kind: str, n: int, threads: int, samples: int, sizes: list[int]) -> dict[int, list[dict[str, Any]]]:
    results: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for sample in range(samples):
        for size in sizes:
            count, processes = (1, size) if kind == "processes" else (size, 1)
            got = drain(n, count, processes, threads)
            results[size].append(got)
            print(
                f"  [{kind} {size}, sample {sample + 1}] {got['rate']:,.0f} jobs/s, postgres {got['postgres_cores']:.2f}"
                f" cores, workers {got['workers_cores']:.2f}, lock waits {got['lock_share']:.1%}",
                flush=True,
            )
    return results


def print_sweep(kind: str, results: dict[int, list[dict[str, Any]]], threads: int) -> None:
    label = "--processes" if kind == "processes" else "runworkers (x1 process)"
    print(
        f"\n{label:<24} {'jobs/s median (range)':>24} {'pg cores':>9} {'worker cores':>13} {'Lock waits':>11}"
        f" {'conns (peak)':>13}" + ("  share per runworker (min-max)" if kind == "runworkers" else "")
    )
    for size, runs in results.items():
        rates = [r["rate"] for r in runs]
        pg = statistics.median(r["postgres_cores"] for r in runs)
        wk = statistics.median(r["workers_cores"] for r in runs)
        locks = statistics.median(r["lock_share"] for r in runs)
        conns = max(sum(r["peak"].values()) for r in runs)
        line = f"{size:<24} {median_spread(rates):>24} {pg:>9.2f} {wk:>13.2f} {locks:>11.1%} {conns:>13}"
        if kind == "runworkers":
            shares = [s for r in runs for s in r["shares"]]
            line += f"  {min(shares):.0%}-{max(shares):.0%} (fair: {1 / size:.0%})"
        print(line, flush=True)
    worst = Counter[str]()
    for runs in results.values():
        for r in runs:
            worst.update(r["waits"])
    top = ", ".join(f"{k} {v / sum(worst.values()):.0%}" for k, v in worst.most_common(6))
    print(f"  what active djtasks backends were doing (all samples): {top}", flush=True)
    waiters = Counter[str]()
    for runs in results.values():
        for r in runs:
            waiters.update(r["lock_waiters"])
    if waiters:
        print(f"  heavyweight lock waits by connection and lock (samples): {dict(waiters.most_common(8))}", flush=True)
    for size, runs in results.items():
        peak = runs[-1]["peak"]
        print(f"  connections at {size}: {dict(sorted(peak.items()))}", flush=True)


# The real-job workload (part "orm").


def orm_rate(n: int) -> dict[str, float]:
    agg = Record.objects.filter(done=True).aggregate(first=Min("created_at"), last=Max("updated_at"))
    elapsed = (agg["last"] - agg["first"]).total_seconds()
    return {"rate": n / elapsed, "seconds": elapsed}


def wait_records(n: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while Record.objects.filter(done=True).count() < n:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker exited during the real-job drain")
        if time.monotonic() > deadline:
            raise SystemExit("real-job drain did not finish")
        time.sleep(0.02)


def orm_djtasks(n: int, processes: int, threads: int) -> dict[str, Any]:
    clear_jobs()
    Record.objects.all().delete()
    insert_and_update.bulk_delay([(i,) for i in range(n)])
    analyze_jobs()
    with gated(1, processes, threads) as procs:
        watch = Watch([p.pid for p in procs])
        watch.start()
        wait_records(n, procs)
        seen = watch.finish()
    return {**orm_rate(n), "peak": seen["peak"], "postgres_cores": seen["postgres_cores"]}


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    from bench.peers.celery_bench import start_redis as start

    return start(tmp)


def orm_celery(n: int, concurrency: int) -> dict[str, Any]:
    from bench.peers.celery_orm import insert_and_update as task

    Record.objects.all().delete()
    for i in range(n):
        task.delay(i)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["PYTHONWARNINGS"] = "ignore:You're running the worker with superuser privileges"
    env["BENCH_APP_NAME"] = "django (celery)"
    command = [sys.executable, "-m", "celery", "--quiet", "-A", "bench.peers.celery_orm", "worker"]
    command += [
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "WARNING",
        "--hostname",
        "scale@%h",
    ]
    worker = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        watch = Watch([worker.pid])
        watch.start()
        wait_records(n, [worker])
        seen = watch.finish()
    finally:
        stop([worker])
    return {**orm_rate(n), "peak": seen["peak"], "postgres_cores": seen["postgres_cores"]}


def orm_part(n: int, samples: int, ages: list[int], concurrencies: list[int], processes: int, threads: int) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    redis_proc, sock = start_redis(tmp)
    os.environ["BENCH_REDIS_SOCKET"] = sock  # read by bench.peers.celery_orm here and in its worker
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for sample in range(samples):
            for age in ages:
                os.environ["BENCH_CONN_MAX_AGE"] = str(age)  # the workers' settings read it
                label = f"djtasks {processes}x{threads}, CONN_MAX_AGE={age}"
                got = orm_djtasks(n, processes, threads)
                results.setdefault(label, []).append(got)
                print(f"  [{label}, sample {sample + 1}] {got['rate']:,.0f} jobs/s", flush=True)
                for conc in concurrencies:
                    label = f"Celery prefork {conc}, CONN_MAX_AGE={age}"
                    got = orm_celery(n, conc)
                    results.setdefault(label, []).append(got)
                    print(f"  [{label}, sample {sample + 1}] {got['rate']:,.0f} jobs/s", flush=True)
    finally:
        os.environ.pop("BENCH_CONN_MAX_AGE", None)
        stop([redis_proc])
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{'real jobs (1 insert + 1 update), ' + str(n) + ' jobs':<48} {'jobs/s median (range)':>24} {'pg cores':>9}"
        f" {'conns (peak)':>13}"
    )
    for label, runs in results.items():
        rates = [r["rate"] for r in runs]
        pg = statistics.median(r["postgres_cores"] for r in runs)
        conns = max(sum(r["peak"].values()) for r in runs)
        print(f"{label:<48} {median_spread(rates):>24} {pg:>9.2f} {conns:>13}", flush=True)
    for label, runs in results.items():
        print(f"  connections, {label}: {dict(sorted(runs[-1]['peak'].items()))}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="processes,runworkers,orm")
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per drain")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(map(str, SWEEP)), help="process / runworker counts")
    parser.add_argument("--orm-jobs", type=int, default=5_000)
    parser.add_argument("--conn-max-age", default="0,60", help="Django CONN_MAX_AGE values for the real jobs")
    parser.add_argument("--celery-concurrency", default="2,8", help="Celery prefork pool sizes")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 1 sample, sizes 1,2")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.samples, args.sizes, args.orm_jobs = 2000, 1, "1,2", 500
    sizes = [int(s) for s in args.sizes.split(",")]
    call_command("migrate", verbosity=0)
    info = database_info()
    print(
        f"{info['postgres_version']}, fsync={info['fsync']}, cpus={info['cpus']}, "
        f"load average {info['loadavg'][0]:.2f} (other work shares this machine: figures are noisy)",
        flush=True,
    )
    parts = args.parts.split(",")
    for kind in ("processes", "runworkers"):
        if kind in parts:
            print(f"== {kind}: {args.jobs:,} no-op jobs, --threads {args.threads}, {args.samples} samples", flush=True)
            print_sweep(kind, sweep(kind, args.jobs, args.threads, args.samples, sizes), args.threads)
    if "orm" in parts:
        print(f"== real jobs: {args.orm_jobs:,}, djtasks vs Celery + Redis, {args.samples} samples", flush=True)
        orm_part(
            args.orm_jobs,
            args.samples,
            [int(a) for a in args.conn_max_age.split(",")],
            [int(c) for c in args.celery_concurrency.split(",")],
            2,
            args.threads,
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
