-- Every query djtasks runs at run time. Only djtasks/store.py executes them, by name.
-- Format: "-- name: <entity>_<verb>[_many]" then one "-- " line saying what it is for, then the SQL.
-- Parameters use psycopg's %(name)s style; time is always a parameter (%(now)s), never now().
-- jsonb columns are returned as text so both Django's and raw psycopg connections decode them the same way.

-- name: job_insert
-- Enqueue one job; NOTIFY (delivered only when the caller's transaction commits) if it is due now.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit
    ) VALUES (
        %(id)s, %(name)s, %(queue)s, %(priority)s, 'queued', %(args)s::jsonb, %(kwargs)s::jsonb, %(run_at)s,
        %(now)s, %(expires_at)s, 0, %(max_attempts)s, '[]'::jsonb, false, %(time_limit)s, %(soft_time_limit)s
    )
    RETURNING queue, run_at
)
SELECT pg_notify('djtasks', queue) FROM inserted WHERE run_at <= %(now)s;

-- name: job_insert_many
-- Enqueue a batch with one statement from parallel arrays; one NOTIFY per queue that got due jobs.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit
    )
    SELECT i.id, i.name, i.queue, i.priority, 'queued', i.args, i.kwargs, i.run_at, %(now)s, i.expires_at,
           0, i.max_attempts, '[]'::jsonb, false, i.time_limit, i.soft_time_limit
    FROM unnest(
        %(ids)s::uuid[], %(names)s::text[], %(queues)s::text[], %(priorities)s::int[], %(args)s::jsonb[],
        %(kwargs)s::jsonb[], %(run_ats)s::timestamptz[], %(expires_ats)s::timestamptz[], %(max_attempts)s::int[],
        %(time_limits)s::float8[], %(soft_time_limits)s::float8[]
    ) AS i(id, name, queue, priority, args, kwargs, run_at, expires_at, max_attempts, time_limit, soft_time_limit)
    RETURNING queue, run_at
)
SELECT pg_notify('djtasks', q.queue)
FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= %(now)s) AS q;

-- name: job_claim_many
-- Claim up to %(limit)s due jobs for one worker, highest priority first; expired ones are cancelled instead.
WITH candidates AS (
    SELECT id
    FROM djtasks_job
    WHERE status = 'queued' AND queue = ANY(%(queues)s::text[]) AND run_at <= %(now)s
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
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
          j.attempt, j.max_attempts, j.enqueued_at, j.run_at, j.time_limit, j.soft_time_limit;

-- name: job_finish_many
-- Record a batch of outcomes; fenced so a result from an attempt this worker no longer owns changes nothing.
-- A job asked to cancel is never retried: one that raised (or would retry) ends cancelled.
UPDATE djtasks_job AS j
SET status = CASE WHEN j.cancel_requested AND o.status IN ('queued', 'failed') THEN 'cancelled' ELSE o.status END,
    result = o.result,
    errors = CASE WHEN o.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(o.error) END,
    finished_at = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE o.finished_at END,
    run_at = CASE WHEN j.cancel_requested THEN j.run_at ELSE COALESCE(o.run_at, j.run_at) END,
    worker_id = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE j.worker_id END
FROM unnest(
    %(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[], %(results)s::jsonb[], %(errors)s::jsonb[],
    %(run_ats)s::timestamptz[], %(finished_ats)s::timestamptz[]
) AS o(id, attempt, status, result, error, run_at, finished_at)
WHERE j.id = o.id AND j.status = 'running' AND j.worker_id = %(worker_id)s::uuid AND j.attempt = o.attempt
RETURNING j.id;

-- name: job_release_many
-- Hand a worker's running jobs, but those in keep_ids, back to the queue without counting the attempt (shutdown, purposeful kill, lost claim answer); a job with a cancel request ends cancelled.
WITH released AS (
    UPDATE djtasks_job
    SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END,
        worker_id = CASE WHEN cancel_requested THEN worker_id END,
        started_at = CASE WHEN cancel_requested THEN started_at END,
        finished_at = CASE WHEN cancel_requested THEN %(now)s END,
        errors = CASE WHEN cancel_requested
            THEN errors || jsonb_build_array(jsonb_build_object(
                'type', 'djtasks.exceptions.JobCancelled', 'message', 'cancelled: stopped before it finished',
                'traceback', '', 'attempt', attempt, 'at', %(now)s))
            ELSE errors END
    WHERE worker_id = %(worker_id)s::uuid AND status = 'running' AND NOT (id = ANY(%(keep_ids)s::uuid[]))
    RETURNING id, queue, status
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM released WHERE status = 'queued') AS q
)
SELECT r.id, r.status FROM released AS r CROSS JOIN notified;

-- name: job_get
-- One job by id, for JobResult.
SELECT id, name, queue, priority, status, args::text AS args, kwargs::text AS kwargs, run_at, enqueued_at,
       started_at, finished_at, expires_at, attempt, max_attempts, worker_id, result::text AS result,
       errors::text AS errors
FROM djtasks_job
WHERE id = %(id)s;

-- name: job_next_run_at
-- When the earliest scheduled job in these queues becomes due, so an idle worker sleeps just that long.
SELECT min(run_at) AS run_at
FROM djtasks_job
WHERE status = 'queued' AND queue = ANY(%(queues)s::text[]);

-- name: worker_register
-- Announce a worker process (again, if it was declared dead while alive); its id fences every job it claims.
INSERT INTO djtasks_worker (id, hostname, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s, %(now)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at;

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
-- Cancel jobs: queued ones at once (they never run), running ones by request (the job, or with terminate its supervisor, acts on it).
UPDATE djtasks_job
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN %(now)s ELSE finished_at END,
    worker_id = CASE WHEN status = 'queued' THEN NULL ELSE worker_id END,
    cancel_requested = CASE WHEN status = 'running' THEN true ELSE cancel_requested END,
    terminate_requested = CASE WHEN status = 'running' AND %(terminate)s THEN true ELSE terminate_requested END,
    errors = CASE WHEN status = 'queued'
        THEN errors || jsonb_build_array(jsonb_build_object(
            'type', 'djtasks.exceptions.JobCancelled', 'message', 'cancelled before it ran',
            'traceback', '', 'attempt', attempt, 'at', %(now)s))
        ELSE errors END
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'running')
RETURNING id, status;

-- name: job_cancel_requested
-- Whether a cancel was requested for one job (JobContext.is_cancelled()).
SELECT cancel_requested FROM djtasks_job WHERE id = %(id)s;

-- name: job_terminate_requested_many
-- Running jobs of these worker processes whose cancel asks for the process to be killed (their supervisor does it).
SELECT id, worker_id, attempt
FROM djtasks_job
WHERE status = 'running' AND terminate_requested AND worker_id = ANY(%(worker_ids)s::uuid[]);

-- name: worker_rescue_many
-- Declare workers dead, delete their rows and re-queue their running jobs counting the attempt (failed with WorkerLost once attempts are spent; cancelled if a cancel was asked).
-- Dead means: listed in worker_ids by the supervisor that saw the process die, or silent since before cutoff
-- while the server has been up since before cutoff (after a server restart live workers get WORKER_TIMEOUT to
-- reconnect, so an outage never turns into rescues). A running job whose worker has no row at all (declared
-- dead, then it claimed more and died) is rescued once it started before cutoff.
WITH dead AS (
    DELETE FROM djtasks_worker
    WHERE id = ANY(%(worker_ids)s::uuid[])
       OR (heartbeat_at < %(cutoff)s AND pg_postmaster_start_time() < %(cutoff)s)
    RETURNING id, hostname, pid, heartbeat_at
),
lost AS (
    SELECT j.id, j.worker_id,
           CASE WHEN j.worker_id = ANY(%(worker_ids)s::uuid[]) THEN %(reason)s::text
                WHEN d.id IS NOT NULL THEN 'worker ' || d.hostname || ' pid ' || d.pid::text
                    || ' sent no heartbeat since ' || d.heartbeat_at::text
                ELSE 'worker ' || j.worker_id::text || ' is gone (no worker row)' END AS reason
    FROM djtasks_job AS j
    LEFT JOIN dead AS d ON d.id = j.worker_id
    WHERE j.status = 'running'
      AND (d.id IS NOT NULL OR j.worker_id = ANY(%(worker_ids)s::uuid[])
           OR (j.started_at < %(cutoff)s AND pg_postmaster_start_time() < %(cutoff)s
               AND NOT EXISTS (SELECT 1 FROM djtasks_worker AS w WHERE w.id = j.worker_id)))
),
rescued AS (
    UPDATE djtasks_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled'
                      WHEN j.attempt < j.max_attempts THEN 'queued' ELSE 'failed' END,
        worker_id = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN j.worker_id END,
        run_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN j.run_at ELSE %(now)s END,
        finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN %(now)s END,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'type', CASE WHEN j.cancel_requested THEN 'djtasks.exceptions.JobCancelled'
                         ELSE 'djtasks.exceptions.WorkerLost' END,
            'message', l.reason, 'traceback', '', 'attempt', j.attempt, 'at', %(now)s))
    FROM lost AS l
    WHERE j.id = l.id AND j.status = 'running' AND j.worker_id = l.worker_id
    RETURNING j.id, l.worker_id, j.status, j.attempt, j.queue
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'queued') AS q
)
SELECT COALESCE(d.id, r.worker_id) AS worker_id, r.id AS job_id, r.status, r.attempt
FROM dead AS d
FULL JOIN rescued AS r ON r.worker_id = d.id
CROSS JOIN notified;

-- name: maintenance_lock
-- Try to become the one process (across all hosts) running a maintenance service now; held by this session.
SELECT pg_try_advisory_lock(hashtextextended('djtasks.maintenance.' || %(name)s, 0)) AS locked;

-- name: maintenance_unlock
-- Let another process run the maintenance service next time.
SELECT pg_advisory_unlock(hashtextextended('djtasks.maintenance.' || %(name)s, 0)) AS unlocked;
