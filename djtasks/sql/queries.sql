-- Every query djtasks runs at run time. Only djtasks/store.py executes them, by name.
-- Format: "-- name: <entity>_<verb>[_many]" then one "-- " line saying what it is for, then the SQL.
-- Parameters use psycopg's %(name)s style; time is always a parameter (%(now)s), never now().
-- jsonb columns are returned as text so both Django's and raw psycopg connections decode them the same way.

-- name: job_insert
-- Enqueue one job; NOTIFY (delivered only when the caller's transaction commits) if it is due now.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested
    ) VALUES (
        %(id)s, %(name)s, %(queue)s, %(priority)s, 'queued', %(args)s::jsonb, %(kwargs)s::jsonb, %(run_at)s,
        %(now)s, %(expires_at)s, 0, %(max_attempts)s, '[]'::jsonb, false
    )
    RETURNING queue, run_at
)
SELECT pg_notify('djtasks', queue) FROM inserted WHERE run_at <= %(now)s;

-- name: job_insert_many
-- Enqueue a batch with one statement from parallel arrays; one NOTIFY per queue that got due jobs.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested
    )
    SELECT i.id, i.name, i.queue, i.priority, 'queued', i.args, i.kwargs, i.run_at, %(now)s, i.expires_at,
           0, i.max_attempts, '[]'::jsonb, false
    FROM unnest(
        %(ids)s::uuid[], %(names)s::text[], %(queues)s::text[], %(priorities)s::int[], %(args)s::jsonb[],
        %(kwargs)s::jsonb[], %(run_ats)s::timestamptz[], %(expires_ats)s::timestamptz[], %(max_attempts)s::int[]
    ) AS i(id, name, queue, priority, args, kwargs, run_at, expires_at, max_attempts)
    RETURNING queue, run_at
)
SELECT pg_notify('djtasks', q.queue)
FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= %(now)s) AS q;

-- name: job_claim_many
-- Claim up to %(limit)s due jobs for one worker, highest priority first; expired ones are cancelled instead.
-- One index-ordered scan per queue (LATERAL) instead of sorting every waiting job of all queues: the claim
-- costs the same with a million jobs waiting or finished as with ten.
WITH candidates AS (
    SELECT c.id
    FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at
        FROM djtasks_job
        WHERE status = 'queued' AND queue = q.name AND run_at <= %(now)s
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE djtasks_job AS j
SET status = CASE WHEN j.expires_at <= %(now)s THEN 'cancelled' ELSE 'running' END,
    attempt = CASE WHEN j.expires_at <= %(now)s THEN j.attempt ELSE j.attempt + 1 END,
    worker_id = CASE WHEN j.expires_at <= %(now)s THEN NULL ELSE %(worker_id)s::uuid END,
    started_at = CASE WHEN j.expires_at <= %(now)s THEN j.started_at ELSE %(now)s END,
    finished_at = CASE WHEN j.expires_at <= %(now)s THEN %(now)s END,
    errors = CASE WHEN j.expires_at <= %(now)s
        THEN j.errors || jsonb_build_array(jsonb_build_object(
            'type', 'djtasks.exceptions.JobExpired',
            'message', 'expired at ' || j.expires_at::text || ' before a worker started it',
            'traceback', '', 'attempt', j.attempt, 'at', %(now)s))
        ELSE j.errors END
FROM candidates AS c
WHERE j.id = c.id
RETURNING j.id, j.name, j.queue, j.priority, j.status, j.args::text AS args, j.kwargs::text AS kwargs,
          j.attempt, j.max_attempts, j.enqueued_at, j.run_at;

-- name: job_finish_many
-- Record a batch of outcomes; fenced so a result from an attempt this worker no longer owns changes nothing.
UPDATE djtasks_job AS j
SET status = o.status,
    result = o.result,
    errors = CASE WHEN o.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(o.error) END,
    finished_at = CASE WHEN o.status = 'queued' THEN NULL ELSE o.finished_at END,
    run_at = COALESCE(o.run_at, j.run_at),
    worker_id = CASE WHEN o.status = 'queued' THEN NULL ELSE j.worker_id END
FROM unnest(
    %(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[], %(results)s::jsonb[], %(errors)s::jsonb[],
    %(run_ats)s::timestamptz[], %(finished_ats)s::timestamptz[]
) AS o(id, attempt, status, result, error, run_at, finished_at)
WHERE j.id = o.id AND j.status = 'running' AND j.worker_id = %(worker_id)s::uuid AND j.attempt = o.attempt
RETURNING j.id;

-- name: job_release_many
-- Hand a worker's unfinished jobs back to the queue without counting the attempt (warm shutdown).
WITH released AS (
    UPDATE djtasks_job
    SET status = 'queued', attempt = attempt - 1, worker_id = NULL, started_at = NULL
    WHERE id = ANY(%(ids)s::uuid[]) AND status = 'running' AND worker_id = %(worker_id)s::uuid
    RETURNING id, queue
)
SELECT r.id, pg_notify('djtasks', r.queue) FROM released AS r;

-- name: job_get
-- One job by id, for JobResult.
SELECT id, name, queue, priority, status, args::text AS args, kwargs::text AS kwargs, run_at, enqueued_at,
       started_at, finished_at, expires_at, attempt, max_attempts, worker_id, result::text AS result,
       errors::text AS errors
FROM djtasks_job
WHERE id = %(id)s;

-- name: job_next_run_at
-- The earliest waiting job due before %(horizon)s in these queues, so an idle worker sleeps just that long
-- (beyond the horizon it sleeps a poll interval anyway, so later jobs need not be looked at).
SELECT min(run_at) AS run_at
FROM djtasks_job
WHERE status = 'queued' AND queue = ANY(%(queues)s::text[]) AND run_at <= %(horizon)s;

-- name: worker_register
-- Announce a worker process; its id fences every job it claims.
INSERT INTO djtasks_worker (id, hostname, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s, %(now)s, %(now)s);

-- name: worker_heartbeat
-- Prove this worker process is alive.
UPDATE djtasks_worker SET heartbeat_at = %(now)s WHERE id = %(id)s RETURNING id;

-- name: worker_delete
-- A worker leaving cleanly removes its row.
DELETE FROM djtasks_worker WHERE id = %(id)s;

-- name: queue_listen
-- Subscribe this connection to enqueue notifications (payload: the queue name).
LISTEN djtasks;

-- name: job_cancel_many
-- Cancel jobs: queued ones at once (they never run), running ones by request (the worker acts on it).
UPDATE djtasks_job
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN %(now)s ELSE finished_at END,
    worker_id = CASE WHEN status = 'queued' THEN NULL ELSE worker_id END,
    cancel_requested = CASE WHEN status = 'running' THEN true ELSE cancel_requested END,
    errors = CASE WHEN status = 'queued'
        THEN errors || jsonb_build_array(jsonb_build_object(
            'type', 'djtasks.exceptions.JobCancelled', 'message', 'cancelled before it ran',
            'traceback', '', 'attempt', attempt, 'at', %(now)s))
        ELSE errors END
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'running')
RETURNING id, status;

-- name: job_prune_many
-- Delete up to %(limit)s jobs in the given final statuses that finished before %(before)s, oldest first.
WITH doomed AS (
    SELECT id
    FROM djtasks_job
    WHERE status = ANY(%(statuses)s::text[]) AND finished_at < %(before)s
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM djtasks_job AS j
USING doomed AS d
WHERE j.id = d.id;
