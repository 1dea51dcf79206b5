"""The bare-SQL ceiling: the leanest queue a psycopg loop can drain, with no djtasks SQL, Django or worker.

    python bench/bare_sql.py [--jobs 20000] [--processes 2] [--batch 100]

Its own table, ``bench_bare_job``: the columns a drain needs (id, name, args, status, result) and one partial
index on the queued rows. ``--processes`` processes, each on one autocommit psycopg connection, loop "claim
up to ``--batch`` queued rows (``UPDATE ... WHERE id IN (SELECT id ... ORDER BY id FOR UPDATE SKIP LOCKED
LIMIT n) RETURNING id, name, args``), then finish them with one ``UPDATE ... FROM unnest(ids, results)``"
until nothing is left. No priorities, no fencing, no expiry, no attempts: what djtasks' drain is compared
with to see what its guarantees and its Python cost (``bench/ceiling.py`` runs djtasks' own SQL the same
way).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import LOOP_START_TIMEOUT_S, checkpoint, psycopg_params, report, run_loops

TABLE = "bench_bare_job"
DEFAULT_BATCH = 100
DEFAULT_PROCESSES = 2

CREATE = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    args jsonb NOT NULL,
    status text NOT NULL,
    result jsonb
);
CREATE INDEX {TABLE}_queued ON {TABLE} (id) WHERE status = 'queued';
"""
CLAIM = f"""
UPDATE {TABLE} SET status = 'running'
WHERE id IN (SELECT id FROM {TABLE} WHERE status = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s)
RETURNING id, name, args
"""
FINISH = f"""
UPDATE {TABLE} AS t SET status = 'succeeded', result = r.result
FROM unnest(%s::bigint[], %s::jsonb[]) AS r(id, result)
WHERE t.id = r.id
"""


def _drain_loop(params: dict[str, Any], batch: int, barrier: Any, out: Any) -> None:
    done = 0
    with psycopg.connect(**params, autocommit=True, application_name="bare-sql-ceiling") as conn, conn.cursor() as cur:
        barrier.wait(LOOP_START_TIMEOUT_S)
        started = time.time()
        while True:
            cur.execute(CLAIM, (batch,))
            rows = cur.fetchall()
            if not rows:
                break
            cur.execute(FINISH, ([row[0] for row in rows], ["null"] * len(rows)))
            done += len(rows)
        ended = time.time()
    out.put((started, ended, done))


def bench_bare_sql_drain(n: int, *, processes: int = DEFAULT_PROCESSES, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Fill the bare table with ``n`` queued rows (ANALYZE, CHECKPOINT) and drain it; the clock runs from the
    first process's first claim to the last process's last finish."""
    params = psycopg_params()
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(
            f"INSERT INTO {TABLE} (name, args, status) "
            "SELECT 'bench.tasks.noop', '[]', 'queued' FROM generate_series(1, %s)",
            (n,),
        )
        conn.execute(f"ANALYZE {TABLE}")
    checkpoint()
    run = run_loops(_drain_loop, (params, batch), processes, "bare-SQL")
    with psycopg.connect(**params, autocommit=True) as conn:
        (succeeded,) = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE status = 'succeeded'").fetchone()  # type: ignore[misc]
        conn.execute(f"DROP TABLE {TABLE}")
    done = run["done"]
    if done != n or succeeded != n:
        raise SystemExit(f"bare-SQL drain: {done} finished by the loop, {succeeded} succeeded, of {n}")
    elapsed = run["ended"] - run["started"]
    return {"rate": n / elapsed, "seconds": elapsed, "jobs": n, "processes": processes, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args()
    d = bench_bare_sql_drain(args.jobs, processes=args.processes, batch=args.batch)
    report(f"bare-SQL ceiling: drain {args.jobs}, {args.processes} procs x {args.batch}/claim", d["rate"], "jobs/s")


if __name__ == "__main__":
    main()
