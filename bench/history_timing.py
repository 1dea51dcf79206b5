"""The hot path with a big history, and what each job costs the database: claim, completion, enqueue and a
real drain on an empty table and again with ``--history`` (10,000,000 by default) finished rows; WAL bytes and
table bytes per job.

    python bench/history_timing.py [--history 10000000] [--rounds 200] [--jobs 20000]
    python bench/history_timing.py --quick      # 200,000 rows, 50 rounds, 5,000 jobs
    python bench/admin_timing.py --rows 10000000 --repeat 3     # the admin pages on a 10M-row table

Per-operation timings run djtasks' own SQL (``job_claim_many``, ``job_finish_many``, ``job_insert``, read with
``djtasks.store.queries()``) on one autocommit psycopg connection with server-side prepared statements, as a
worker process's producer and completer do: ``--rounds`` claims of K jobs (K = 1, 10, 100) from a backlog,
each followed by the finish of those K; ms per statement, median and p95 (nearest rank). The drain is a real
``runworker --processes 2 --threads 4`` (``bench/run.py``'s drain). The history is ``bench/run.py``'s: finished
rows with time-ordered ids older than any new job, loaded with one ``INSERT ... SELECT generate_series``, then
VACUUM ANALYZE (as autovacuum would leave it) and CHECKPOINT.

Costs per job (on the empty table): WAL bytes (``pg_current_wal_lsn()`` before and after) of single
``.delay()`` calls, of one ``bulk_delay``, of the drain (claim + finish of every job; it starts right after a
CHECKPOINT, so first touches of pages write full-page images as they would after every checkpoint) and of the
pruner's deletes; and ``pg_total_relation_size`` per finished row (heap, indexes, TOAST) of the history.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bench.ceiling import insert_params
from bench.common import (
    JOB_TABLE,
    analyze_jobs,
    checkpoint,
    clear_jobs,
    database_info,
    percentile,
    psycopg_params,
    vacuum_jobs,
)
from bench.procs import CpuMeter
from bench.run import bench_drain, drain_once, fill_history, running_worker, wait_drained
from bench.tasks import noop
from djtasks.cursors import django_store
from djtasks.ids import uuid7
from djtasks.store import queries

KS = [1, 10, 100]
INSERTS = 1000
NOOP_RESULT = "null"
PRUNE_BATCH = 1000  # djtasks.maintenance.pruner.BATCH_SIZE


def wal_lsn() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(cur.fetchone()[0])


def table_bytes() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size(%s)", [JOB_TABLE])
        return int(cur.fetchone()[0])


def time_hot_path(rounds: int) -> dict[str, dict[str, float]]:
    """ms per statement: ``job_claim_many`` of K from a backlog and ``job_finish_many`` of those K, for each K;
    ``job_insert`` + COMMIT. The backlog is enqueued (and ANALYZEd) first; the history, if any, stays."""
    first_new = uuid7()  # every job enqueued below has a later (time-ordered) id; the history's are older
    noop.bulk_delay([()] * (rounds * sum(KS) + 300))
    analyze_jobs()
    checkpoint()
    claim_sql, finish_sql, insert_sql = (queries()[q] for q in ("job_claim_many", "job_finish_many", "job_insert"))
    out: dict[str, dict[str, float]] = {}
    params = {**psycopg_params(), "prepare_threshold": 0}
    with psycopg.connect(**params, autocommit=True, application_name="djtasks-bench") as conn, conn.cursor() as cur:
        worker_id = uuid.uuid4()
        for k in KS:
            claims, finishes = [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                cur.execute(
                    claim_sql,
                    {"now": datetime.now(UTC), "worker_id": worker_id, "queues": ["default"], "limit": k}
                    | {"expired_error": "{}"},
                )
                rows = cur.fetchall()
                t1 = time.perf_counter()
                names = [col.name for col in cur.description]
                n = len(rows)
                cur.execute(finish_sql, finish_params(worker_id, rows, names))
                done = len(cur.fetchall())
                t2 = time.perf_counter()
                if n != k or done != k:
                    raise SystemExit(f"claim of {k}: claimed {n}, finished {done}")
                claims.append((t1 - t0) * 1000)
                finishes.append((t2 - t1) * 1000)
            out[f"claim {k}"] = {"p50": statistics.median(claims), "p95": percentile(claims, 0.95)}
            out[f"finish {k}"] = {"p50": statistics.median(finishes), "p95": percentile(finishes, 0.95)}
        out |= buffers_touched(cur, claim_sql, finish_sql, worker_id)
        inserts = []
        for _ in range(INSERTS):
            t0 = time.perf_counter()
            cur.execute(insert_sql, insert_params())
            inserts.append((time.perf_counter() - t0) * 1000)
        out["insert + COMMIT"] = {"p50": statistics.median(inserts), "p95": percentile(inserts, 0.95)}
    with connection.cursor() as cur:  # back to the history alone
        cur.execute(f"DELETE FROM {JOB_TABLE} WHERE id >= %s", [first_new])
    vacuum_jobs()
    return out


def finish_params(worker_id: uuid.UUID, rows: list[Any], names: list[str]) -> dict[str, Any]:
    """``job_finish_many``'s parameters recording every claimed row of ``rows`` as a no-op success."""
    i_id, i_attempt = names.index("id"), names.index("attempt")
    n, now = len(rows), datetime.now(UTC)
    return {
        "worker_id": worker_id,
        "ids": [r[i_id] for r in rows],
        "attempts": [r[i_attempt] for r in rows],
        "statuses": ["succeeded"] * n,
        "results": [NOOP_RESULT] * n,
        "errors": [None] * n,
        "run_ats": [None] * n,
        "finished_ats": [now] * n,
        "started_ats": [now] * n,
        "mark_ids": [],
        "mark_attempts": [],
        "mark_started_ats": [],
    }


def buffers_touched(cur: Any, claim_sql: str, finish_sql: str, worker_id: uuid.UUID) -> dict[str, dict[str, float]]:
    """Shared buffers (hit + read, from EXPLAIN (ANALYZE, BUFFERS)) one claim of 100 and one finish of 100
    touch: a count the machine's load does not move, unlike their time. The statements run for real."""
    out: dict[str, dict[str, float]] = {}
    claim = {"now": datetime.now(UTC), "worker_id": worker_id, "queues": ["default"], "limit": 100}
    claim |= {"expired_error": "{}"}
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + claim_sql, claim)
    plan = cur.fetchone()[0][0]["Plan"]
    out["buffers: claim 100"] = {"p50": plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], "p95": 0.0}
    cur.execute(claim_sql, claim)  # the next 100, with their ids, to finish under EXPLAIN
    rows = cur.fetchall()
    names = [col.name for col in cur.description]
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + finish_sql, finish_params(worker_id, rows, names))
    plan = cur.fetchone()[0][0]["Plan"]
    out["buffers: finish 100"] = {"p50": plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], "p95": 0.0}
    return out


def costs_per_job(jobs: int) -> dict[str, float]:
    """WAL bytes and server CPU (µs) per job of each step, and table bytes per finished row, on the empty table.
    Server CPU is what the cluster's processes used during the step (``bench.procs.CpuMeter``)."""
    out: dict[str, float] = {}

    def measured(label: str, n: int, step: Any) -> Any:
        meter = CpuMeter([])
        before = wal_lsn()
        meter.start()
        value = step()
        used = meter.stop()
        out[f"WAL bytes per job, {label}"] = (wal_lsn() - before) / n
        out[f"server CPU µs per job, {label}"] = used["postgres_cores"] * used["seconds"] / n * 1e6
        return value

    clear_jobs()
    checkpoint()
    measured(f".delay() x {INSERTS:,} (own transaction each)", INSERTS, lambda: [noop.delay() for _ in range(INSERTS)])
    clear_jobs()
    checkpoint()
    measured(f"bulk_delay of {jobs:,}", jobs, lambda: noop.bulk_delay([()] * jobs))
    analyze_jobs()
    checkpoint()
    since = timezone.now()
    with running_worker(2, 4) as worker:  # the worker is up first: its start-up is not the drain's
        measured(f"drain of {jobs:,} (claim + finish, 2x4)", jobs, lambda: wait_drained(worker, since, jobs))
    out["table bytes per finished job (just drained: heap + indexes, before vacuum)"] = table_bytes() / jobs
    store = django_store()
    checkpoint()

    def prune() -> int:
        deleted = 0
        while count := store.job_prune_many(
            statuses=["succeeded"], before=datetime.now(UTC) + timedelta(1), limit=PRUNE_BATCH
        ):
            deleted += count
        return deleted

    measured(f"pruning {jobs:,} (batches of {PRUNE_BATCH:,})", jobs, prune)
    clear_jobs()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000_000, help="finished rows (0: costs and empty table only)")
    parser.add_argument("--rounds", type=int, default=200, help="claims (and finishes) timed per K")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain and per WAL measurement")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.rounds, args.jobs = 200_000, 50, 5_000
    call_command("migrate", verbosity=0)
    info = database_info()
    print(f"{info['postgres_version']}, cpus={info['cpus']}, load average {info['loadavg'][0]:.2f}", flush=True)
    print("== costs per job (empty table)", flush=True)
    for label, value in costs_per_job(args.jobs).items():
        print(f"{label:<80} {value:>10,.0f}", flush=True)
    results: dict[str, Any] = {}
    clear_jobs()
    checkpoint()
    print("== hot path, empty table", flush=True)
    results["empty"] = time_hot_path(args.rounds)
    results["empty drain"] = bench_drain(args.jobs, 2, 4)["drain"]["rate"]
    clear_jobs()
    if not args.history:  # --history 0: the costs and the empty table only
        for op, e in results["empty"].items():
            print(f"{op:<32} {e['p50']:>8.2f} / {e['p95']:>6.2f}")
        print(f"drain {args.jobs} no-op jobs, 2x4: {results['empty drain']:,.0f} jobs/s", flush=True)
        return
    print(f"== filling {args.history:,} finished rows", flush=True)
    fill = fill_history(args.history)
    size = table_bytes()
    print(
        f"  filled + VACUUM ANALYZE in {fill['seconds']:.0f} s; djtasks_job {size / 2**30:.2f} GiB, "
        f"{size / args.history:.0f} bytes per finished row",
        flush=True,
    )
    print("== hot path with the history", flush=True)
    results["history"] = time_hot_path(args.rounds)
    with connection.cursor() as cur:  # the drain below TRUNCATEs: keep the history, time the drain on it
        cur.execute("SELECT count(*) FROM djtasks_job")
        rows = cur.fetchone()[0]
    results["history drain"] = drain_once(args.jobs, 2, 4)["rate"]
    print(f"\n{'ms per statement (median / p95)':<32} {'empty table':>18} {f'{rows:,} finished rows':>24}")
    for op in results["empty"]:
        e, h = results["empty"][op], results["history"][op]
        if op.startswith("buffers"):  # a count, not a time
            print(f"{op + ' (shared buffers)':<32} {e['p50']:>17,.0f} {h['p50']:>23,.0f}")
            continue
        print(f"{op:<32} {e['p50']:>8.2f} / {e['p95']:>6.2f} {h['p50']:>14.2f} / {h['p95']:>6.2f}")
    print(
        f"{'drain ' + str(args.jobs) + ' no-op jobs, 2x4 (jobs/s)':<32} {results['empty drain']:>18,.0f}"
        f" {results['history drain']:>24,.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
