"""djtasks benchmarks: enqueue rate, bulk enqueue rate, drain throughput and idle pick-up latency.

    python bench/run.py [--jobs 20000] [--enqueue 4000] [--processes 2] [--threads 4] [--history 1000000]
    python bench/run.py --ceiling      # also the bare psycopg ceiling (bench/ceiling.py) and ratios to it
    python bench/run.py --peers        # also the ceiling, Celery+Redis and django-tasks-db: one table, ratios

Starts its own durable PostgreSQL cluster (fsync on) unless DATABASE_URL is set, runs a real
``manage.py runworker`` subprocess, and prints one line per figure. The ``bench_*`` functions return their
numbers, so other scripts (``bench/peers/harness.py``) can put them side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from bench.common import (
    JOB_TABLE,
    ROOT,
    analyze_jobs,
    checkpoint,
    clear_jobs,
    database_info,
    percentile,
    psycopg_params,
    report,
    vacuum_jobs,
)
from bench.tasks import noop
from djtasks.models import Job, Worker

DRAIN_POLL_S = 0.005  # how often the drain watcher asks "anything left?"; bounds the end-time error
PICKUP_POLL_S = 0.0005  # how often the pick-up watcher looks for the job's claimed_at
PICKUP_GAP_S = 0.01  # pause between pick-up samples, so each finds an idle worker
PICKUP_TIMEOUT_S = 30.0
WORKER_START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 900.0
WORKER_STOP_TIMEOUT_S = 60.0
HISTORY_ROWS = 1_000_000
DEFAULT_JOBS = 20_000
DEFAULT_ENQUEUE = 4_000
DEFAULT_SAMPLES = 200


def bench_single_enqueue(n: int) -> dict[str, float]:
    """``.delay()`` ``n`` times in autocommit mode: one INSERT + NOTIFY and one COMMIT per job."""
    clear_jobs()
    checkpoint()
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        noop.delay()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    clear_jobs()
    return {
        "rate": n / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "jobs": n,
        "seconds": elapsed,
    }


def bench_bulk_enqueue(n: int) -> dict[str, float]:
    """One ``bulk_delay`` of ``n`` jobs (autocommit: djtasks splits it into statements of its own size)."""
    clear_jobs()
    checkpoint()
    started = time.perf_counter()
    noop.bulk_delay([()] * n)
    elapsed = time.perf_counter() - started
    clear_jobs()
    return {"rate": n / elapsed, "jobs": n}


def prepare_backlog(n: int) -> None:
    """``n`` due no-op jobs, then ANALYZE so the drain runs on the plans autovacuum's statistics give, then
    CHECKPOINT so the drain does not pay for flushing the backlog's pages."""
    noop.bulk_delay([()] * n)
    analyze_jobs()
    checkpoint()


@contextlib.contextmanager
def running_worker(processes: int, threads: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``manage.py runworker`` subprocess (``extra``: more of its options), started and (warm) stopped
    around the block."""
    Worker.objects.all().delete()  # rows of earlier, stopped workers must not count as started ones
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
            *extra,
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while Worker.objects.count() < processes:
            if proc.poll() is not None:
                raise SystemExit(f"runworker exited with {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise SystemExit("runworker did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The watcher's question, "is any job still queued or running?", asked through the two partial indexes that hold
# exactly those rows (djtasks_job_claim, djtasks_job_running), with sequential scans off for its session. Asked as
# Job.objects.filter(status__in=...).exists(), the planner, whose statistics count the whole backlog as queued,
# scans the heap from its first page, through the rows the drain has finished so far: a probe whose cost grows
# with the drain's progress. (With today's drains of well under a second, A/B runs show no difference in the
# rate; it mattered while drains were slower and polls more numerous.)
PENDING_SQL = f"""
SELECT EXISTS (SELECT 1 FROM {JOB_TABLE} WHERE status = 'queued')
    OR EXISTS (SELECT 1 FROM {JOB_TABLE} WHERE status = 'running')
"""


def wait_drained(
    worker: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]], since: datetime, n: int
) -> dict[str, float]:
    """Watch until no job is queued or running; the drain runs from the first claim to that moment.
    ``worker``: the runworker, or several (``bench/scale.py``); one exiting during the drain stops it.

    The start is the earliest ``claimed_at`` (the claim time the worker wrote), so worker start-up is not
    counted; the end is when the watcher saw the last outcome committed, so a completer that holds
    outcomes back is counted. The watcher polls every ``DRAIN_POLL_S`` (``PENDING_SQL``, on a connection of
    its own).
    """
    workers = [worker] if isinstance(worker, subprocess.Popen) else list(worker)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with psycopg.connect(**psycopg_params(), autocommit=True, application_name="bench-watcher") as probe:
        probe.execute("SET enable_seqscan = off")
        while probe.execute(PENDING_SQL).fetchone()[0]:  # type: ignore[index]
            for proc in workers:
                if proc.poll() is not None:
                    raise SystemExit(f"runworker exited with {proc.returncode} during the drain")
            if time.monotonic() > deadline:
                raise SystemExit(f"drain did not finish within {DRAIN_TIMEOUT_S:.0f} s")
            time.sleep(DRAIN_POLL_S)
    ended = time.time()
    drained = Job.objects.filter(claimed_at__gte=since)
    first = drained.aggregate(first=Min("claimed_at"))["first"]
    succeeded = drained.filter(status="succeeded").count()
    if succeeded != n:
        raise SystemExit(f"drain: {succeeded} of {n} jobs succeeded")
    elapsed = ended - first.timestamp()
    return {"rate": n / elapsed, "seconds": elapsed, "jobs": n}


def measure_pickup(samples: int) -> dict[str, float]:
    """Idle pick-up latency: from just before the enqueueing transaction's COMMIT to the job's claim
    (``claimed_at``), one job at a time, ``samples`` times. A worker must be running and idle."""
    latencies = []
    for _ in range(samples):
        with transaction.atomic():
            result = noop.delay()
            committed = timezone.now()  # just before COMMIT: the latency includes the commit itself
        deadline = time.monotonic() + PICKUP_TIMEOUT_S
        while (job := Job.objects.filter(id=result.id).values("claimed_at").first())["claimed_at"] is None:
            if time.monotonic() > deadline:
                raise SystemExit("pick-up: the worker did not start a job within 30 s")
            time.sleep(PICKUP_POLL_S)
        latencies.append((job["claimed_at"] - committed).total_seconds())
        time.sleep(PICKUP_GAP_S)
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "samples": samples,
    }


def bench_drain(n: int, processes: int, threads: int, *, pickup_samples: int = 0) -> dict[str, Any]:
    """Drain ``n`` no-op jobs enqueued in advance with a fresh ``runworker``; then, with the same (now idle)
    worker on an emptied table, measure pick-up latency when ``pickup_samples`` > 0."""
    clear_jobs()
    prepare_backlog(n)
    since = timezone.now()
    out: dict[str, Any] = {}
    with running_worker(processes, threads) as worker:
        out["drain"] = wait_drained(worker, since, n)
        if pickup_samples:
            clear_jobs()
            out["pickup"] = measure_pickup(pickup_samples)
        time.sleep(1.0)  # at rest: nothing queued, nothing running
        out["rss"] = worker_rss()
    return out


def worker_rss() -> dict[str, float]:
    """Resident memory (VmRSS, MB) of each worker process of the running worker, from ``/proc``."""
    sizes = []
    for pid in Worker.objects.values_list("pid", flat=True):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
    return {"max_mb": max(sizes, default=0.0), "processes": len(sizes)}


def fill_history(rows: int) -> dict[str, float]:
    """``rows`` succeeded jobs finished over the past day, with time-ordered (v7-like) ids older than any new
    job's, so they sit where real history sits: in the primary key's left part and the finished index."""
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {JOB_TABLE} (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at,
                                     started_at, finished_at, attempt, max_attempts, result, errors,
                                     cancel_requested)
            SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
                   %s, 'default', 0, 'succeeded', '[]', '{{}}', t, t, t, t, 1, 1, 'null', '[]', false
            FROM (
                SELECT t, (extract(epoch FROM t) * 1000)::bigint AS ms, md5(g::text) AS h
                FROM (SELECT g, now() - interval '1 day' + g * (interval '1 day' / %s) AS t
                      FROM generate_series(1, %s) AS g) AS s
            ) AS rows
            """,
            [noop.name, rows + 1, rows],
        )
    vacuum_jobs()
    checkpoint()
    return {"rows": rows, "seconds": time.perf_counter() - started}


def drain_once(n: int, processes: int, threads: int) -> dict[str, float]:
    """Enqueue ``n`` no-op jobs (ANALYZE, CHECKPOINT) and drain them with a fresh ``runworker``."""
    prepare_backlog(n)
    since = timezone.now()
    with running_worker(processes, threads) as worker:
        return wait_drained(worker, since, n)


def bench_drain_with_history(n: int, processes: int, threads: int, rows: int, rounds: int) -> dict[str, Any]:
    """The same drain with ``rows`` finished jobs in the table, against the empty table, in ``rounds``
    rounds of: empty table, drain; fill the history (VACUUM ANALYZE), drain. Pairing each history drain
    with an empty-table drain measured just before it keeps a change of load on the machine out of the
    ratio. Rates are over all rounds; ``round_ratios`` are each round's history / empty."""
    empties, histories, fills = [], [], []
    for _ in range(rounds):
        clear_jobs()
        checkpoint()
        empties.append(drain_once(n, processes, threads))
        clear_jobs()
        fills.append(fill_history(rows))
        histories.append(drain_once(n, processes, threads))
    clear_jobs()

    def combine(drains: list[dict[str, float]]) -> dict[str, float]:
        jobs, seconds = sum(d["jobs"] for d in drains), sum(d["seconds"] for d in drains)
        return {"rate": jobs / seconds, "seconds": seconds, "jobs": jobs, "rounds": len(drains)}

    return {
        "fill": {"rows": rows, "seconds": statistics.median(f["seconds"] for f in fills)},
        "drain": combine(histories),
        "empty": combine(empties),
        "round_ratios": [h["rate"] / e["rate"] for h, e in zip(histories, empties, strict=True)],
    }


def run_djtasks(args: argparse.Namespace, *, single_enqueue: bool = True) -> dict[str, Any]:
    """Every djtasks figure, printed as it comes and returned (``single_enqueue=False``: all but ``.delay()``,
    which the peers harness times itself, interleaved with the bare insert)."""
    out: dict[str, Any] = {}
    if single_enqueue:
        out["delay"] = d = bench_single_enqueue(args.enqueue)
        report(f".delay() in its own transaction ({args.enqueue})", d["rate"], "jobs/s")
        report(".delay() latency p50", d["p50_ms"], "ms")
        report(".delay() latency p95", d["p95_ms"], "ms")
    out["bulk"] = b = bench_bulk_enqueue(args.jobs)
    report(f"bulk_delay of {args.jobs}", b["rate"], "jobs/s")
    drained = bench_drain(args.jobs, args.processes, args.threads, pickup_samples=args.samples)
    out.update(drained)
    report(f"drain {args.jobs} no-op jobs ({args.processes}x{args.threads})", drained["drain"]["rate"], "jobs/s")
    report(f"idle pick-up latency p50 (commit -> start, {args.samples})", drained["pickup"]["p50_ms"], "ms")
    report("idle pick-up latency p95 (commit -> start)", drained["pickup"]["p95_ms"], "ms")
    report("worker process RSS at rest (largest)", drained["rss"]["max_mb"], "MB")
    if args.history:
        hist = bench_drain_with_history(
            args.jobs, args.processes, args.threads, args.history, rounds=args.history_rounds
        )
        out["history"] = hist
        report(f"  (filled {args.history:,} finished rows + VACUUM ANALYZE in)", hist["fill"]["seconds"], "s")
        report(f"drain {args.jobs} with {args.history:,} finished rows", hist["drain"]["rate"], "jobs/s")
        report(f"drain {args.jobs}, empty table, paired with it", hist["empty"]["rate"], "jobs/s")
        report("  ... history / empty", 100 * hist["drain"]["rate"] / hist["empty"]["rate"], "%")
        print(f"  (rounds: {', '.join(f'{r:.0%}' for r in hist['round_ratios'])})", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="jobs per drain and per bulk enqueue")
    parser.add_argument("--enqueue", type=int, default=DEFAULT_ENQUEUE, help="single .delay() calls timed")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="idle pick-up samples")
    parser.add_argument("--processes", type=int, default=2, help="runworker --processes (2-core recommendation)")
    parser.add_argument("--threads", type=int, default=4, help="runworker --threads (2-core recommendation)")
    parser.add_argument(
        "--history", type=int, default=HISTORY_ROWS, help="finished rows for the history drain (0: skip it)"
    )
    parser.add_argument("--history-rounds", type=int, default=3, help="rounds of (empty drain, fill, history drain)")
    parser.add_argument("--ceiling", action="store_true", help="also run the bare psycopg ceiling")
    parser.add_argument("--peers", action="store_true", help="also run the ceiling, Celery+Redis, django-tasks-db")
    parser.add_argument("--ceiling-k1-jobs", type=int, default=5000, help="jobs for the 1-per-transaction ceiling")
    parser.add_argument(
        "--drain-pairs",
        type=int,
        default=6,
        help="with --ceiling/--peers: alternating djtasks and bare-SQL drains, for the median ratio (0: skip)",
    )
    parser.add_argument(
        "--enqueue-only", action="store_true", help="only .delay() against the bare insert (the ceiling's)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    call_command("migrate", verbosity=0)
    info = database_info()
    print(
        f"{info['postgres_version']}, fsync={info['fsync']}, "
        f"synchronous_commit={info['synchronous_commit']}, cpus={info['cpus']}, "
        f"load average {info['loadavg'][0]:.2f}",
        flush=True,
    )
    if args.peers or args.ceiling or args.enqueue_only:
        from bench.peers.harness import run_all  # imported here: the plain run needs no peer

        results = run_all(args, info)
    else:
        results = {"machine": info, "djtasks": run_djtasks(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
