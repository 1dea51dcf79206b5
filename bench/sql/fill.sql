-- Benchmark-only statements (bench/admin_timing.py), in the format of djtasks/sql/queries.sql.

-- name: job_fill_synthetic
-- Benchmarks only: synthetic jobs number %(first)s..%(last)s of %(total)s enqueued over the day before %(now)s: 2% failed,
-- 1% cancelled, 1% due and 1% scheduled, one in 20,000 running, the rest succeeded. Ids are UUIDv7 by enqueue time.
INSERT INTO djtasks_job (
    id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, started_at, finished_at,
    attempt, max_attempts, worker_id, result, errors, cancel_requested
)
SELECT (lpad(to_hex((extract(epoch FROM s.enqueued_at) * 1000)::bigint), 12, '0') || '7'
        || substr(s.h, 1, 3) || '8' || substr(s.h, 4, 15))::uuid,
       s.name, s.queue, (s.i %% 3) - 1, s.status,
       jsonb_build_array(s.i, 'synthetic'), jsonb_build_object('user_id', s.i),
       CASE WHEN s.status = 'queued' AND s.i %% 100 = 4 THEN %(now)s + interval '1 hour' ELSE s.enqueued_at END,
       s.enqueued_at,
       CASE WHEN s.status IN ('queued', 'cancelled') THEN NULL ELSE s.enqueued_at + interval '50 ms' END,
       CASE WHEN s.status IN ('queued', 'running') THEN NULL
            ELSE s.enqueued_at + interval '50 ms' + (s.i %% 997) * interval '1 ms' END,
       CASE WHEN s.status IN ('queued', 'cancelled') THEN 0 ELSE 1 END, 1,
       CASE WHEN s.status = 'running' THEN %(worker_id)s::uuid END,
       CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('ok', true, 'n', s.i) END,
       CASE WHEN s.status = 'failed' THEN jsonb_build_array(jsonb_build_object(
           'type', 'builtins.ValueError', 'message', 'synthetic failure ' || s.i, 'attempt', 1,
           'at', s.enqueued_at, 'traceback', repeat('  File "app/tasks.py", line 42, in job' || chr(10), 8)))
            ELSE '[]'::jsonb END,
       false
FROM (
    SELECT g.i,
           md5(g.i::text) AS h,
           %(now)s - interval '24 hours' * (1 - g.i::float8 / %(total)s) AS enqueued_at,
           (%(names)s::text[])[1 + (g.i * 7919) %% cardinality(%(names)s::text[])] AS name,
           (%(queues)s::text[])[1 + (g.i * 7919) %% cardinality(%(queues)s::text[])] AS queue,
           CASE WHEN g.i %% 20000 = 5 THEN 'running'
                WHEN g.i %% 100 IN (0, 1) THEN 'failed'
                WHEN g.i %% 100 = 2 THEN 'cancelled'
                WHEN g.i %% 100 IN (3, 4) THEN 'queued'
                ELSE 'succeeded' END AS status
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(i)
) AS s;

-- name: job_table_analyze
-- Refresh the planner's statistics and visibility map of djtasks_job (autovacuum does this on a live table).
VACUUM (ANALYZE) djtasks_job;
