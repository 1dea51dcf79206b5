"""The ceiling: what PostgreSQL allows for djtasks' own SQL with no job, no Django and no worker around it.

    python bench/ceiling.py [--jobs 20000] [--processes 2] [--batch 100] [--inserts 2000]

Drain: ``--processes`` processes, each on one autocommit psycopg connection, loop "claim up to ``--batch``
due jobs with ``job_claim_many``, then record every outcome with one ``job_finish_many``" until nothing is
left: two statements (two transactions, two WAL flushes) per batch. ``--batch 1`` is the one-job-per-
transaction loop. Single enqueue: ``job_insert`` in autocommit, one INSERT + NOTIFY + COMMIT per job, the
reference for ``.delay()``. The SQL text is djtasks' own, read with ``djtasks.store.queries()``, so the
ceiling moves with the queries; it runs on the djtasks tables of the benchmark cluster (migrated here).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    LOOP_START_TIMEOUT_S,
    analyze_jobs,
    checkpoint,
    clear_jobs,
    percentile,
    psycopg_params,
    report,
    run_loops,
)
from bench.tasks import noop
from djtasks.ids import uuid7
from djtasks.models import Job
from djtasks.store import queries

QUEUES = ["default"]
DEFAULT_BATCH = 100
DEFAULT_PROCESSES = 2
NOOP_RESULT = "null"  # what djtasks records for a job that returned None


def _drain_loop(params: dict[str, Any], batch: int, barrier: Any, out: Any) -> None:
    """One process of the ceiling: claim a batch, finish it, until the queue has nothing left for it."""
    claim_sql, finish_sql = queries()["job_claim_many"], queries()["job_finish_many"]
    worker_id = uuid.uuid4()  # fences the finish exactly as a djtasks worker's id does
    done = 0
    with psycopg.connect(**params, autocommit=True, application_name="djtasks-ceiling") as conn, conn.cursor() as cur:
        barrier.wait(LOOP_START_TIMEOUT_S)
        started = time.time()
        while True:
            claim = {"now": datetime.now(UTC), "worker_id": worker_id, "queues": QUEUES, "limit": batch}
            cur.execute(claim_sql, {**claim, "expired_error": "{}"})  # no job here expires
            rows = cur.fetchall()
            if not rows:
                break
            names = [col.name for col in cur.description]
            i_id, i_attempt, i_status = names.index("id"), names.index("attempt"), names.index("status")
            running = [row for row in rows if row[i_status] == "running"]  # expired ones come back cancelled
            n = len(running)
            finished = datetime.now(UTC)
            cur.execute(
                finish_sql,
                {
                    "worker_id": worker_id,
                    "ids": [row[i_id] for row in running],
                    "attempts": [row[i_attempt] for row in running],
                    "statuses": ["succeeded"] * n,
                    "results": [NOOP_RESULT] * n,
                    "errors": [None] * n,
                    "run_ats": [None] * n,
                    "finished_ats": [finished] * n,
                    "started_ats": [finished] * n,
                    "mark_ids": [],  # no job runs long enough for a start mark of its own
                    "mark_attempts": [],
                    "mark_started_ats": [],
                },
            )
            done += len(cur.fetchall())
        ended = time.time()
    out.put((started, ended, done))


def bench_ceiling_drain(n: int, *, processes: int = DEFAULT_PROCESSES, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Drain ``n`` jobs enqueued in advance (and ANALYZEd) with the bare loop; the clock runs from the first
    process's first claim to the last process's last finish."""
    clear_jobs()
    noop.bulk_delay([()] * n)
    analyze_jobs()
    checkpoint()
    run = run_loops(_drain_loop, (psycopg_params(), batch), processes, "ceiling")
    done = run["done"]
    succeeded = Job.objects.filter(status="succeeded").count()
    if done != n or succeeded != n:
        raise SystemExit(f"ceiling drain: {done} finished by the loop, {succeeded} succeeded, of {n}")
    elapsed = run["ended"] - run["started"]
    clear_jobs()
    return {"rate": n / elapsed, "seconds": elapsed, "jobs": n, "processes": processes, "batch": batch}


def insert_params() -> dict[str, Any]:
    """The parameters ``.delay()`` sends to ``job_insert`` for the no-op job (a fresh UUIDv7, ``[]``, ``{}``),
    built as cheaply as a bare loop would: what the ceiling's single enqueue sends."""
    now = datetime.now(UTC)
    return {
        "id": uuid7(),
        "name": noop.name,
        "queue": "default",
        "priority": 0,
        "args": "[]",
        "kwargs": "{}",
        "run_at": now,
        "now": now,
        "expires_at": None,
        "max_attempts": 1,
        "time_limit": None,
        "soft_time_limit": None,
        "trace_context": None,
    }


def bench_bare_insert(n: int) -> dict[str, float]:
    """``job_insert`` ``n`` times on a bare autocommit psycopg connection: one INSERT + NOTIFY + COMMIT each,
    with the same parameters ``.delay()`` sends for the no-op job (a fresh UUIDv7, ``[]``, ``{}``)."""
    clear_jobs()
    checkpoint()
    sql = queries()["job_insert"]
    latencies = []
    with psycopg.connect(**psycopg_params(), autocommit=True, application_name="djtasks-ceiling") as conn:
        cur = conn.cursor()
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            cur.execute(sql, insert_params())
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    inserted = Job.objects.count()
    clear_jobs()
    if inserted != n:
        raise SystemExit(f"bare insert: {inserted} rows of {n}")
    return {
        "rate": n / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "jobs": n,
        "seconds": elapsed,
    }


def run_ceiling(jobs: int, k1_jobs: int, inserts: int, processes: int, batch: int) -> dict[str, Any]:
    """Every ceiling figure, printed as it comes and returned."""
    out: dict[str, Any] = {}
    out["insert"] = ins = bench_bare_insert(inserts)
    report(f"ceiling: bare job_insert + COMMIT ({inserts})", ins["rate"], "jobs/s")
    report("ceiling: bare job_insert latency p50", ins["p50_ms"], "ms")
    out["drain"] = d = bench_ceiling_drain(jobs, processes=processes, batch=batch)
    report(f"ceiling: drain {jobs}, {processes} procs x {batch}/claim", d["rate"], "jobs/s")
    if k1_jobs:
        out["drain_k1"] = d1 = bench_ceiling_drain(k1_jobs, processes=processes, batch=1)
        report(f"ceiling: drain {k1_jobs}, {processes} procs x 1/claim", d1["rate"], "jobs/s")
    return out


def main() -> None:
    from django.core.management import call_command

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs drained with --batch per claim")
    parser.add_argument("--k1-jobs", type=int, default=5_000, help="jobs drained one per claim (0: skip)")
    parser.add_argument("--inserts", type=int, default=2_000, help="bare single inserts timed")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="jobs per claim (K)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    run_ceiling(args.jobs, args.k1_jobs, args.inserts, args.processes, args.batch)


if __name__ == "__main__":
    main()
