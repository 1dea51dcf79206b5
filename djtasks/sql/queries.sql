-- Every query djtasks runs at run time. Only djtasks/store.py executes them, by name.
-- Format: "-- name: <entity>_<verb>[_many]" then one "-- " line saying what it is for, then the SQL.
-- Parameters use psycopg's %(name)s style; time is always a parameter (%(now)s), never now().
-- jsonb columns are returned as text so both Django's and raw psycopg connections decode them the same way.

-- name: job_insert
-- Enqueue one job; NOTIFY (delivered only when the caller's transaction commits) if it is due now.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit, trace_context
    ) VALUES (
        %(id)s, %(name)s, %(queue)s, %(priority)s, 'queued', %(args)s::jsonb, %(kwargs)s::jsonb, %(run_at)s,
        %(now)s, %(expires_at)s, 0, %(max_attempts)s, '[]'::jsonb, false, %(time_limit)s, %(soft_time_limit)s,
        %(trace_context)s::jsonb
    )
    RETURNING queue, run_at
)
SELECT pg_notify('djtasks', queue) FROM inserted WHERE run_at <= %(now)s;

-- name: job_insert_many
-- Enqueue a batch with COPY (rows streamed, no statement to parse per row); queue_notify_many follows it.
COPY djtasks_job (
    id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
    attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit, trace_context
) FROM STDIN;

-- name: queue_notify_many
-- Wake the workers of these queues (delivered when the enqueueing transaction commits).
SELECT pg_notify('djtasks', q.name) FROM unnest(%(queues)s::text[]) AS q(name);

-- name: job_claim_many
-- Claim up to %(limit)s due jobs for one worker, highest priority first; expired ones are cancelled instead.
-- One index-ordered scan per queue (LATERAL) instead of sorting every waiting job of all queues: the claim
-- costs the same with a million jobs waiting or finished as with ten. A claimed row is 'running' (owned by
-- the worker, fenced by its id and attempt) with started_at NULL until its function starts: a rescue hands
-- such a row back with the attempt restored. %(expired_error)s is the JobExpired entry (rows.error_entry).
-- The candidates are updated through "id = ANY(ARRAY(...))", not a join: a join lets the planner, which prices
-- an index probe at random_page_cost, hash the whole table to meet a few hundred candidates whenever the table
-- is small (up to ~50,000 rows: 8 ms a claim at 20,000); an array of unknown length is always probed by id.
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
    claimed_at = CASE WHEN j.expires_at <= %(now)s THEN j.claimed_at ELSE %(now)s END,
    started_at = CASE WHEN j.expires_at <= %(now)s THEN j.started_at END,
    finished_at = CASE WHEN j.expires_at <= %(now)s THEN %(now)s END,
    errors = CASE WHEN j.expires_at <= %(now)s
        THEN j.errors || jsonb_build_array(%(expired_error)s::jsonb || jsonb_build_object(
            'message', 'expired at ' || j.expires_at::text || ' before a worker started it',
            'attempt', j.attempt))
        ELSE j.errors END
WHERE j.id = ANY(ARRAY(SELECT id FROM candidates))
RETURNING j.id, j.name, j.queue, j.priority, j.status, j.args::text AS args, j.kwargs::text AS kwargs,
          j.attempt, j.max_attempts, j.enqueued_at, j.run_at, j.time_limit, j.soft_time_limit,
          (j.on_success IS NOT NULL OR j.group_id IS NOT NULL) AS workflow, j.trace_context::text AS trace_context;

-- name: queue_lock_many
-- Open a limited claim (in its transaction): lock the rows of these limited queues and job names, always in one order so claims never deadlock, and read their options as they are now.
SELECT kind, name, concurrency, rate_limit, paused, rate_tat
FROM djtasks_queue
WHERE (kind = 'queue' AND name = ANY(%(queues)s::text[])) OR (kind = 'job' AND name = ANY(%(jobs)s::text[]))
ORDER BY kind, name
FOR UPDATE;

-- name: job_running_count_many
-- In a limited claim, after queue_lock_many: jobs running per queue and per job name. A statement of its own,
-- so its snapshot is taken after the lock was granted and counts the jobs the previous lock holder claimed.
SELECT 'queue' AS kind, queue AS name, count(*) AS running
FROM djtasks_job
WHERE status = 'running' AND queue = ANY(%(queues)s::text[])
GROUP BY queue
UNION ALL
SELECT 'job' AS kind, name, count(*) AS running
FROM djtasks_job
WHERE status = 'running' AND name = ANY(%(jobs)s::text[])
GROUP BY name;

-- name: job_claim_limited_many
-- In a limited claim, after the counts: claim at most cap jobs of each queue (names_only: only jobs of the limited names) and name_cap of each limited job name, then move each rate-limited queue's limiter on by the jobs it started.
-- Candidates a name's cap leaves out still count against their queue's cap: a claim may take fewer jobs than allowed, never more.
-- Also run alone (no locks) for the unlimited queues while some job name has a limit: every limited name in
-- full_names, no caps, no rated queues; job_claim_many stays as it is for everyone else. Its UPDATE and
-- RETURNING are job_claim_many's (claimed_at set, started_at NULL until the function starts; %(expired_error)s
-- the JobExpired entry): keep them the same.
WITH candidates AS (
    SELECT c.id, c.name, c.priority, c.run_at
    FROM unnest(%(queues)s::text[], %(caps)s::int[], %(names_only)s::boolean[]) AS q(name, cap, names_only)
    CROSS JOIN LATERAL (
        SELECT id, name, priority, run_at
        FROM djtasks_job
        WHERE status = 'queued' AND queue = q.name AND run_at <= %(now)s
          AND NOT (name = ANY(%(full_names)s::text[]))
          AND (NOT q.names_only OR name = ANY(%(open_names)s::text[]))
        ORDER BY priority DESC, run_at, id
        LIMIT q.cap
        FOR UPDATE SKIP LOCKED
    ) AS c
),
chosen AS (
    SELECT r.id
    FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.name ORDER BY c.priority DESC, c.run_at, c.id) AS nth
        FROM candidates AS c
    ) AS r
    LEFT JOIN unnest(%(open_names)s::text[], %(name_caps)s::int[]) AS n(name, cap) ON n.name = r.name
    WHERE n.cap IS NULL OR r.nth <= n.cap
    ORDER BY r.priority DESC, r.run_at, r.id
    LIMIT %(limit)s
),
claimed AS (
    UPDATE djtasks_job AS j
    SET status = CASE WHEN j.expires_at <= %(now)s THEN 'cancelled' ELSE 'running' END,
        attempt = CASE WHEN j.expires_at <= %(now)s THEN j.attempt ELSE j.attempt + 1 END,
        worker_id = CASE WHEN j.expires_at <= %(now)s THEN NULL ELSE %(worker_id)s::uuid END,
        claimed_at = CASE WHEN j.expires_at <= %(now)s THEN j.claimed_at ELSE %(now)s END,
        started_at = CASE WHEN j.expires_at <= %(now)s THEN j.started_at END,
        finished_at = CASE WHEN j.expires_at <= %(now)s THEN %(now)s END,
        errors = CASE WHEN j.expires_at <= %(now)s
            THEN j.errors || jsonb_build_array(%(expired_error)s::jsonb || jsonb_build_object(
                'message', 'expired at ' || j.expires_at::text || ' before a worker started it',
                'attempt', j.attempt))
            ELSE j.errors END
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    RETURNING j.id, j.name, j.queue, j.priority, j.status, j.args::text AS args, j.kwargs::text AS kwargs,
              j.attempt, j.max_attempts, j.enqueued_at, j.run_at, j.time_limit, j.soft_time_limit,
              (j.on_success IS NOT NULL OR j.group_id IS NOT NULL) AS workflow, j.trace_context::text AS trace_context
),
paced AS (
    UPDATE djtasks_queue AS q
    SET rate_tat = greatest(q.rate_tat, %(now)s) + s.started * r.interval_s * interval '1 second'
    FROM (SELECT queue, count(*) AS started FROM claimed WHERE status = 'running' GROUP BY queue) AS s
    JOIN unnest(%(rated_queues)s::text[], %(intervals)s::double precision[]) AS r(name, interval_s) ON r.name = s.queue
    WHERE q.kind = 'queue' AND q.name = s.queue
    RETURNING q.name
)
SELECT * FROM claimed;

-- name: job_finish_many
-- Record a batch of outcomes and start marks; fenced so a result from an attempt this worker no longer owns changes nothing.
-- A job asked to cancel is never retried: one that raised (or would retry) ends cancelled. A start mark
-- (a job whose function started and still runs) sets started_at, so a rescue counts that attempt; an
-- outcome carries its own started_at. The two sets are disjoint (the worker's ledger sees to it): one
-- statement must not update a row twice.
-- Both updates probe their rows by primary key ("id = ANY(ARRAY(SELECT unnest(...)))": an array the planner
-- cannot count, so it never prefers a sequential scan, however small the table) and meet the batch in a hash
-- join. The fence (status running, this worker) is compared with columns of the batch, not constants: as
-- constants the planner would estimate it from statistics that always count almost no running rows, expect one
-- row, and loop over the whole batch for each row found (measured: 15 ms a 200-job batch in a 20,000-row
-- table), or walk the partial djtasks_job_running index, which holds every entry of this worker, dead ones
-- included, since the last vacuum (94 us of server time per job in a 40,000-job drain).
WITH marked AS (
    UPDATE djtasks_job AS j
    SET started_at = s.started_at
    FROM unnest(
        %(mark_ids)s::uuid[], %(mark_attempts)s::int[], %(mark_started_ats)s::timestamptz[],
        array_fill(%(worker_id)s::uuid, ARRAY[cardinality(%(mark_ids)s::uuid[])]),
        array_fill('running'::text, ARRAY[cardinality(%(mark_ids)s::uuid[])])
    ) AS s(id, attempt, started_at, worker_id, running)
    WHERE j.id = ANY(ARRAY(SELECT unnest(%(mark_ids)s::uuid[]))) AND j.id = s.id
      AND j.status = s.running AND j.worker_id = s.worker_id AND j.attempt = s.attempt AND j.started_at IS NULL
)
UPDATE djtasks_job AS j
SET status = CASE WHEN j.cancel_requested AND o.status IN ('queued', 'failed') THEN 'cancelled' ELSE o.status END,
    result = o.result,
    -- Each failed attempt's entry names its worker: TaskResult.worker_ids has one per attempt.
    errors = CASE WHEN o.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(o.error || jsonb_build_object('worker_id', %(worker_id)s::text)) END,
    finished_at = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE o.finished_at END,
    run_at = CASE WHEN j.cancel_requested THEN j.run_at ELSE COALESCE(o.run_at, j.run_at) END,
    worker_id = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE j.worker_id END,
    started_at = COALESCE(j.started_at, o.started_at)
FROM unnest(
    %(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[], %(results)s::jsonb[], %(errors)s::jsonb[],
    %(run_ats)s::timestamptz[], %(finished_ats)s::timestamptz[], %(started_ats)s::timestamptz[],
    array_fill(%(worker_id)s::uuid, ARRAY[cardinality(%(ids)s::uuid[])]),
    array_fill('running'::text, ARRAY[cardinality(%(ids)s::uuid[])])
) AS o(id, attempt, status, result, error, run_at, finished_at, started_at, worker_id, running)
WHERE j.id = ANY(ARRAY(SELECT unnest(%(ids)s::uuid[]))) AND j.id = o.id
  AND j.status = o.running AND j.worker_id = o.worker_id AND j.attempt = o.attempt
RETURNING j.id;

-- name: job_release_many
-- Hand a worker's running jobs, but those in keep_ids, back to the queue without counting the attempt (shutdown, purposeful kill, lost claim answer); a job with a cancel request ends cancelled (%(cancelled_error)s).
WITH released AS (
    UPDATE djtasks_job
    SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END,
        worker_id = CASE WHEN cancel_requested THEN worker_id END,
        started_at = CASE WHEN cancel_requested THEN started_at END,
        finished_at = CASE WHEN cancel_requested THEN %(now)s END,
        errors = CASE WHEN cancel_requested
            THEN errors || jsonb_build_array(%(cancelled_error)s::jsonb || jsonb_build_object('attempt', attempt))
            ELSE errors END
    WHERE worker_id = %(worker_id)s::uuid AND status = 'running' AND NOT (id = ANY(%(keep_ids)s::uuid[]))
    RETURNING id, queue, status
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM released WHERE status = 'queued') AS q
)
SELECT r.id, r.status FROM released AS r CROSS JOIN notified;

-- name: queue_sync_many
-- Write the settings' queue options and the @job concurrency limits into djtasks_queue; an option an operator changed at run time (listed in overrides) keeps its value. Limits of job names no longer defined go; workers hear of changes.
WITH wanted AS (
    SELECT *
    FROM unnest(%(kinds)s::text[], %(names)s::text[], %(concurrencies)s::int[], %(rate_limits)s::text[],
                %(pauseds)s::boolean[]) AS w(kind, name, concurrency, rate_limit, paused)
),
saved AS (
    INSERT INTO djtasks_queue AS q (kind, name, concurrency, rate_limit, paused, overrides, updated_at)
    SELECT w.kind, w.name, w.concurrency, w.rate_limit, w.paused, '[]'::jsonb, %(now)s FROM wanted AS w
    ON CONFLICT (kind, name) DO UPDATE SET
        concurrency = CASE WHEN q.overrides ? 'concurrency' THEN q.concurrency ELSE EXCLUDED.concurrency END,
        rate_limit = CASE WHEN q.overrides ? 'rate_limit' THEN q.rate_limit ELSE EXCLUDED.rate_limit END,
        paused = CASE WHEN q.overrides ? 'paused' THEN q.paused ELSE EXCLUDED.paused END,
        updated_at = EXCLUDED.updated_at
    WHERE (NOT q.overrides ? 'concurrency' AND q.concurrency IS DISTINCT FROM EXCLUDED.concurrency)
       OR (NOT q.overrides ? 'rate_limit' AND q.rate_limit IS DISTINCT FROM EXCLUDED.rate_limit)
       OR (NOT q.overrides ? 'paused' AND q.paused IS DISTINCT FROM EXCLUDED.paused)
    RETURNING q.kind, q.name
),
gone AS (
    DELETE FROM djtasks_queue
    WHERE kind = 'job' AND NOT (name = ANY(SELECT name FROM wanted WHERE kind = 'job'))
    RETURNING kind, name
)
SELECT c.kind, c.name, pg_notify('djtasks_queue', c.name)
FROM (SELECT kind, name FROM saved UNION ALL SELECT kind, name FROM gone) AS c;

-- name: queue_set
-- An operator's change to a queue's options: write the options in changed (set ones join overrides, reset ones leave it and take the settings' value); workers hear of it when the transaction commits.
WITH saved AS (
    INSERT INTO djtasks_queue AS q (kind, name, concurrency, rate_limit, paused, overrides, updated_at)
    VALUES ('queue', %(name)s, %(concurrency)s, %(rate_limit)s, %(paused)s, to_jsonb(%(overridden)s::text[]), %(now)s)
    ON CONFLICT (kind, name) DO UPDATE SET
        concurrency = CASE WHEN 'concurrency' = ANY(%(changed)s::text[]) THEN EXCLUDED.concurrency ELSE q.concurrency END,
        rate_limit = CASE WHEN 'rate_limit' = ANY(%(changed)s::text[]) THEN EXCLUDED.rate_limit ELSE q.rate_limit END,
        paused = CASE WHEN 'paused' = ANY(%(changed)s::text[]) THEN EXCLUDED.paused ELSE q.paused END,
        overrides = (
            SELECT coalesce(jsonb_agg(u.o ORDER BY u.o), '[]'::jsonb)
            FROM (SELECT jsonb_array_elements_text(q.overrides) UNION SELECT unnest(%(overridden)s::text[])) AS u(o)
            WHERE NOT (u.o = ANY(%(reset)s::text[]))
        ),
        updated_at = EXCLUDED.updated_at
    RETURNING q.name, q.concurrency, q.rate_limit, q.paused, q.overrides::text AS overrides
)
SELECT s.*, pg_notify('djtasks_queue', s.name) FROM saved AS s;

-- name: queue_options_list
-- Every queue's and limited job name's run-time options (workers, the dashboard, manage.py djtasks status).
SELECT kind, name, concurrency, rate_limit, paused, overrides::text AS overrides, rate_tat, updated_at
FROM djtasks_queue
ORDER BY kind, name;

-- name: queue_options_listen
-- Subscribe this connection to option changes (payload: the queue or job name).
LISTEN djtasks_queue;

-- name: job_get
-- One job by id, for JobResult.
SELECT id, name, queue, priority, status, args::text AS args, kwargs::text AS kwargs, run_at, enqueued_at,
       started_at, finished_at, expires_at, attempt, max_attempts, worker_id, result::text AS result,
       errors::text AS errors, progress::text AS progress, unique_key, group_id, parent_id,
       on_success::text AS on_success,
       (j.parent_id IS NOT NULL AND EXISTS (SELECT 1 FROM djtasks_group AS g WHERE g.id = j.parent_id))
           AS parent_is_group
FROM djtasks_job AS j
WHERE j.id = %(id)s;

-- name: job_next_run_at
-- The earliest waiting job due before %(horizon)s in these queues, so an idle worker sleeps just that long
-- (beyond the horizon it sleeps a poll interval anyway, so later jobs need not be looked at).
-- Jobs of job names at their concurrency limit (skip_names) are left out: a finishing one wakes the workers.
SELECT min(run_at) AS run_at
FROM djtasks_job
WHERE status = 'queued' AND queue = ANY(%(queues)s::text[]) AND run_at <= %(horizon)s
  AND NOT (name = ANY(%(skip_names)s::text[]));

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
-- Cancel jobs: queued and waiting ones at once (they never run; %(cancelled_error)s), running ones by request (the job, or with terminate its supervisor, acts on it).
UPDATE djtasks_job
SET status = CASE WHEN status IN ('queued', 'waiting') THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status IN ('queued', 'waiting') THEN %(now)s ELSE finished_at END,
    worker_id = CASE WHEN status IN ('queued', 'waiting') THEN NULL ELSE worker_id END,
    cancel_requested = CASE WHEN status = 'running' THEN true ELSE cancel_requested END,
    terminate_requested = CASE WHEN status = 'running' AND %(terminate)s THEN true ELSE terminate_requested END,
    errors = CASE WHEN status IN ('queued', 'waiting')
        THEN errors || jsonb_build_array(%(cancelled_error)s::jsonb || jsonb_build_object('attempt', attempt))
        ELSE errors END
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'running', 'waiting')
RETURNING id, status;

-- name: job_prune_many
-- Delete up to %(limit)s jobs in the given final statuses that finished before %(before)s, oldest first.
-- A chord header job is kept while its callback still waits: the callback is given its result.
WITH doomed AS (
    SELECT id
    FROM djtasks_job AS j
    WHERE status = ANY(%(statuses)s::text[]) AND finished_at < %(before)s
      AND (j.group_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM djtasks_group AS g
          CROSS JOIN LATERAL jsonb_array_elements(g.on_success) AS e
          JOIN djtasks_job AS c ON c.id = (e.value->>'id')::uuid
          WHERE g.id = j.group_id AND c.status = 'waiting'
      ))
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM djtasks_job AS j
USING doomed AS d
WHERE j.id = d.id;

-- name: job_queued_ids
-- Up to limit queued jobs (due or scheduled) of one queue, for an operator purge (claim index only).
SELECT id FROM djtasks_job WHERE status = 'queued' AND queue = %(queue)s LIMIT %(limit)s;

-- name: job_count_waiting
-- How many jobs wait in one queue, due or scheduled (what a purge would delete).
SELECT count(*) AS waiting FROM djtasks_job WHERE status = 'queued' AND queue = %(queue)s;
-- name: group_prune_many
-- Delete up to %(limit)s groups created before %(before)s none of whose members is left (all pruned).
WITH doomed AS (
    SELECT g.id
    FROM djtasks_group AS g
    WHERE g.created_at < %(before)s AND NOT EXISTS (SELECT 1 FROM djtasks_job AS j WHERE j.group_id = g.id)
    ORDER BY g.created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM djtasks_group AS g
USING doomed AS d
WHERE g.id = d.id;

-- name: schedule_sync_many
-- Upsert code and settings schedules by name; next_fire_at is kept unless the timing changed or the row was orphaned.
INSERT INTO djtasks_schedule AS s (
    name, job_name, cron, interval_seconds, at, timezone, args, kwargs, queue, priority, enabled, next_fire_at,
    source, catch_up, expires_seconds, "unique", orphaned, last_status
)
SELECT d.name, d.job_name, d.cron, d.interval_seconds, d.at, d.timezone, d.args, d.kwargs, d.queue, d.priority,
       true, d.next_fire_at, d.source, d.catch_up, d.expires_seconds, d.is_unique, false, ''
FROM unnest(
    %(names)s::text[], %(job_names)s::text[], %(crons)s::text[], %(intervals)s::double precision[],
    %(ats)s::timestamptz[], %(timezones)s::text[], %(args)s::jsonb[], %(kwargs)s::jsonb[], %(queues)s::text[],
    %(priorities)s::smallint[], %(next_fire_ats)s::timestamptz[], %(sources)s::text[], %(catch_ups)s::text[],
    %(expires)s::double precision[], %(uniques)s::boolean[]
) AS d(name, job_name, cron, interval_seconds, at, timezone, args, kwargs, queue, priority, next_fire_at, source,
       catch_up, expires_seconds, is_unique)
ON CONFLICT (name) DO UPDATE SET
    job_name = EXCLUDED.job_name,
    cron = EXCLUDED.cron,
    interval_seconds = EXCLUDED.interval_seconds,
    at = EXCLUDED.at,
    timezone = EXCLUDED.timezone,
    args = EXCLUDED.args,
    kwargs = EXCLUDED.kwargs,
    queue = EXCLUDED.queue,
    priority = EXCLUDED.priority,
    source = EXCLUDED.source,
    catch_up = EXCLUDED.catch_up,
    expires_seconds = EXCLUDED.expires_seconds,
    "unique" = EXCLUDED."unique",
    -- An operator's off switch survives restarts; a definition that comes back after removal is on again.
    enabled = s.enabled OR s.orphaned,
    orphaned = false,
    next_fire_at = CASE
        WHEN s.orphaned
          OR (s.cron, s.interval_seconds, s.at, s.timezone)
             IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.interval_seconds, EXCLUDED.at, EXCLUDED.timezone)
        THEN EXCLUDED.next_fire_at
        ELSE s.next_fire_at
    END
RETURNING s.name, (xmax = 0) AS created;

-- name: schedule_orphan_many
-- Disable code and settings schedules that are no longer defined (admin ones are never touched).
UPDATE djtasks_schedule
SET enabled = false, orphaned = true, next_fire_at = NULL,
    last_status = 'disabled: no longer defined in ' || source
WHERE source IN ('code', 'settings') AND NOT orphaned AND NOT (name = ANY(%(names)s::text[]))
RETURNING name, source;

-- name: schedule_due_many
-- Enabled schedules whose next tick is due, oldest first; read without locks (firing is a compare-and-set).
SELECT id, name, job_name, cron, interval_seconds, at, timezone, args::text AS args, kwargs::text AS kwargs, queue,
       priority, next_fire_at, catch_up, expires_seconds, "unique"
FROM djtasks_schedule
WHERE enabled AND next_fire_at <= %(now)s
ORDER BY next_fire_at, id
LIMIT %(limit)s;

-- name: schedule_unplanned_many
-- Enabled schedules with no next tick to plan: written past Schedule.save() (bulk_create, fixtures, raw SQL) or re-timed by QuerySet.update (a trigger cleared the tick); a one-off that fired at its time is done.
SELECT id, name, job_name, cron, interval_seconds, at, timezone, args::text AS args, kwargs::text AS kwargs, queue,
       priority, expires_seconds
FROM djtasks_schedule
WHERE enabled AND next_fire_at IS NULL AND (at IS NULL OR last_fire_at IS NULL OR last_fire_at < at)
ORDER BY id
LIMIT %(limit)s;

-- name: schedule_plan
-- Give an unplanned schedule its next tick, unless it was planned, switched off or redefined meanwhile.
UPDATE djtasks_schedule
SET next_fire_at = %(next_fire_at)s
WHERE id = %(id)s AND enabled AND next_fire_at IS NULL AND job_name = %(job_name)s AND queue = %(queue)s
  AND cron = %(cron)s AND interval_seconds IS NOT DISTINCT FROM %(interval_seconds)s::double precision
  AND at IS NOT DISTINCT FROM %(at)s::timestamptz AND timezone = %(timezone)s
RETURNING id;

-- name: schedule_disable
-- Switch off a schedule whose stored definition cannot fire, with the reason for the admin; only as read.
UPDATE djtasks_schedule
SET enabled = false, next_fire_at = NULL, last_status = %(status)s
WHERE id = %(id)s AND enabled AND next_fire_at IS NULL AND job_name = %(job_name)s AND queue = %(queue)s
  AND cron = %(cron)s AND interval_seconds IS NOT DISTINCT FROM %(interval_seconds)s::double precision
  AND at IS NOT DISTINCT FROM %(at)s::timestamptz AND timezone = %(timezone)s
RETURNING id;

-- name: schedule_fire
-- Claim a due tick: move next_fire_at on from it; of any number of schedulers exactly one matches the row.
UPDATE djtasks_schedule
SET next_fire_at = %(next_fire_at)s
WHERE id = %(id)s AND enabled AND next_fire_at = %(due)s
  AND cron = %(cron)s AND interval_seconds IS NOT DISTINCT FROM %(interval_seconds)s::double precision
  AND at IS NOT DISTINCT FROM %(at)s::timestamptz AND timezone = %(timezone)s
RETURNING id;

-- name: job_insert_periodic_many
-- Enqueue the jobs of a fire; a unique schedule's job is left out while one with its key is queued or running.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested, unique_key
    )
    SELECT i.id, i.name, i.queue, i.priority, 'queued', i.args, i.kwargs, i.run_at, %(now)s, i.expires_at,
           0, i.max_attempts, '[]'::jsonb, false, i.unique_key
    FROM unnest(
        %(ids)s::uuid[], %(names)s::text[], %(queues)s::text[], %(priorities)s::int[], %(args)s::jsonb[],
        %(kwargs)s::jsonb[], %(run_ats)s::timestamptz[], %(expires_ats)s::timestamptz[], %(max_attempts)s::int[],
        %(unique_keys)s::text[]
    ) AS i(id, name, queue, priority, args, kwargs, run_at, expires_at, max_attempts, unique_key)
    ON CONFLICT (unique_key) WHERE status IN ('queued', 'running') AND unique_key IS NOT NULL DO NOTHING
    RETURNING id, queue
)
SELECT i.id, pg_notify('djtasks', i.queue) FROM inserted AS i;

-- name: schedule_record_fire
-- Note a fire's outcome on its schedule for the admin: the tick, the job (kept if none was made) and a status.
UPDATE djtasks_schedule
SET last_fire_at = %(fired_at)s, last_job_id = COALESCE(%(job_id)s::uuid, last_job_id), last_status = %(status)s
WHERE id = %(id)s;

-- name: schedule_next_fire_at
-- When the earliest enabled schedule is due next, so a scheduler sleeps just that long.
SELECT min(next_fire_at) AS next_fire_at FROM djtasks_schedule WHERE enabled;

-- name: connection_backend_pid
-- The server process this connection's statement runs in: a pooler answers the client's start-up with a cancel key of
-- its own, so a pid unlike the one the connection was told at start-up means a pooler (PgBouncer) sits in between.
SELECT pg_backend_pid() AS pid;

-- name: connection_timezone_utc
-- Put this session in UTC when it could not be asked for at start-up (behind a pooler, which tracks TimeZone per client).
SET TIME ZONE 'UTC';

-- name: schedule_listen
-- Subscribe this connection to schedule changes (the admin notifies on save; payload: the schedule name).
LISTEN djtasks_schedule;

-- name: schedule_notify
-- Wake every listening scheduler to re-read schedules (delivered when the saving transaction commits).
SELECT pg_notify('djtasks_schedule', %(name)s);

-- name: job_retry_many
-- Operator retry: failed or cancelled jobs go back to the queue, due now, with at least one attempt left.
-- A job whose unique_key is held by an active job is skipped (so is a second job with the same key), and so is
-- a workflow step whose parent never succeeded. A retried step that succeeds hands off to nothing cancelled.
WITH candidates AS (
    SELECT DISTINCT ON (coalesce(j.unique_key, j.id::text)) j.id
    FROM djtasks_job AS j
    WHERE j.id = ANY(%(ids)s::uuid[]) AND j.status IN ('failed', 'cancelled')
      AND (j.unique_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM djtasks_job AS a
          WHERE a.unique_key = j.unique_key AND a.status IN ('queued', 'running')
      ))
      -- a workflow step cancelled before its input arrived has nothing to run on
      AND (j.parent_id IS NULL
           OR EXISTS (SELECT 1 FROM djtasks_job AS p WHERE p.id = j.parent_id AND p.status = 'succeeded')
           OR EXISTS (SELECT 1 FROM djtasks_group AS g WHERE g.id = j.parent_id AND g.remaining <= 0))
    ORDER BY coalesce(j.unique_key, j.id::text), j.id DESC
),
retried AS (
    UPDATE djtasks_job AS j
    SET status = 'queued', run_at = %(now)s, started_at = NULL, finished_at = NULL, worker_id = NULL,
        result = NULL, progress = NULL, cancel_requested = false, terminate_requested = false,
        max_attempts = greatest(j.max_attempts, j.attempt + 1),
        expires_at = CASE WHEN j.expires_at <= %(now)s THEN NULL ELSE j.expires_at END
    FROM candidates AS c
    WHERE j.id = c.id AND j.status IN ('failed', 'cancelled')
    RETURNING j.id, j.queue
)
SELECT r.id, pg_notify('djtasks', r.queue) FROM retried AS r;

-- name: job_requeue_many
-- Operator requeue: a fresh copy (new id, no history, not in any group or chain) of each finished job, due now.
WITH inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, unique_key, cancel_requested
    )
    SELECT n.new_id, j.name, j.queue, j.priority, 'queued', j.args, j.kwargs, %(now)s, %(now)s, NULL,
           0, j.max_attempts, '[]'::jsonb, j.unique_key, false
    FROM unnest(%(ids)s::uuid[], %(new_ids)s::uuid[]) AS n(id, new_id)
    JOIN djtasks_job AS j ON j.id = n.id
    WHERE j.status IN ('succeeded', 'failed', 'cancelled')
    ON CONFLICT DO NOTHING
    RETURNING id, queue
)
SELECT i.id, pg_notify('djtasks', i.queue) FROM inserted AS i;

-- name: job_delete_many
-- Operator delete: remove jobs that are not running (a running job is cancelled first, then deleted).
DELETE FROM djtasks_job WHERE id = ANY(%(ids)s::uuid[]) AND status <> 'running' RETURNING id;

-- name: job_count_estimate
-- The planner's idea of the row count (reltuples scaled to the table's current size): no COUNT(*) scan.
SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
            ELSE (c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
       END AS estimate
FROM pg_class AS c
WHERE c.oid = 'djtasks_job'::regclass;

-- name: queue_stats_waiting
-- Per queue: jobs due now, jobs scheduled later, and the run_at of the oldest due job (claim index only).
SELECT queue,
       count(*) FILTER (WHERE run_at <= %(now)s) AS queued,
       count(*) FILTER (WHERE run_at > %(now)s) AS scheduled,
       min(run_at) FILTER (WHERE run_at <= %(now)s) AS oldest_run_at
FROM djtasks_job
WHERE status = 'queued'
GROUP BY queue;

-- name: queue_stats_workflow_waiting
-- Per queue: workflow steps waiting for their input (the waiting-steps index only).
SELECT queue, count(*) AS waiting
FROM djtasks_job
WHERE status = 'waiting'
GROUP BY queue;

-- name: queue_stats_running
-- Per queue: jobs running now, and jobs claimed ahead by a worker but not started yet (running-jobs index only).
SELECT queue, count(*) FILTER (WHERE started_at IS NOT NULL) AS running,
       count(*) FILTER (WHERE started_at IS NULL) AS claimed
FROM djtasks_job
WHERE status = 'running'
GROUP BY queue;

-- name: queue_stats_finished
-- Per queue and time bucket since %(since)s: jobs that succeeded, failed, were cancelled (finished index only).
SELECT queue,
       date_bin(%(bucket)s::interval, finished_at, %(origin)s) AS bucket,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM djtasks_job
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at >= %(since)s AND finished_at <= %(now)s
GROUP BY 1, 2;

-- name: job_stats_estimate
-- The planner's statistics on the job table's queue and status columns (ANALYZE's most common values and their share of the rows): no scan.
SELECT s.attname::text AS column_name, s.null_frac,
       s.most_common_vals::text::text[] AS vals, s.most_common_freqs AS freqs
FROM pg_stats AS s
JOIN pg_class AS c ON c.relname = s.tablename
JOIN pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = s.schemaname
WHERE c.oid = 'djtasks_job'::regclass AND s.attname IN ('queue', 'status') AND NOT s.inherited;

-- name: worker_count_alive
-- Registered worker processes that sent a heartbeat since %(cutoff)s (alive) and those that did not (dead, not rescued yet).
SELECT count(*) FILTER (WHERE heartbeat_at >= %(cutoff)s) AS alive,
       count(*) FILTER (WHERE heartbeat_at < %(cutoff)s) AS dead
FROM djtasks_worker;

-- name: schedule_oldest_due
-- The fire time of the most overdue enabled schedule that has not fired yet (the due-schedules index: one row read), or NULL.
SELECT min(next_fire_at) AS next_fire_at
FROM djtasks_schedule
WHERE enabled AND next_fire_at <= %(now)s;

-- name: worker_list
-- Every registered worker process with how many jobs it runs now and holds claimed ahead (alive or not is the caller's call).
SELECT w.id, w.hostname, w.pid, w.queues::text AS queues, w.concurrency, w.started_at, w.heartbeat_at,
       (SELECT count(*) FROM djtasks_job AS j
        WHERE j.status = 'running' AND j.worker_id = w.id AND j.started_at IS NOT NULL) AS running,
       (SELECT count(*) FROM djtasks_job AS j
        WHERE j.status = 'running' AND j.worker_id = w.id AND j.started_at IS NULL) AS claimed
FROM djtasks_worker AS w
ORDER BY w.hostname, w.pid;

-- name: job_cancel_requested
-- Whether a cancel was requested for one job (JobContext.is_cancelled()).
SELECT cancel_requested FROM djtasks_job WHERE id = %(id)s;

-- name: job_terminate_requested_many
-- Running jobs of these worker processes whose cancel asks for the process to be killed (their supervisor does it).
SELECT id, worker_id, attempt
FROM djtasks_job
WHERE status = 'running' AND terminate_requested AND worker_id = ANY(%(worker_ids)s::uuid[]);

-- name: worker_rescue_many
-- Declare workers dead, delete their rows and rescue their running jobs: a started one counting the attempt (failed with WorkerLost once attempts are spent), one only claimed ahead handed back with the attempt restored; cancelled if a cancel was asked.
-- Dead means: listed in worker_ids by the supervisor that saw the process die, or silent since before cutoff
-- while the server has been up since before cutoff (after a server restart live workers get WORKER_TIMEOUT to
-- reconnect, so an outage never turns into rescues). A running job whose worker has no row at all (declared
-- dead, then it claimed more and died) is rescued once it was claimed before cutoff.
-- Started means started_at is set (the worker writes it in batches) or the supervisor saw it start
-- (started_ids/started_attempts, from the dead process's start board). %(lost_error)s and %(cancelled_error)s
-- are the WorkerLost and JobCancelled entries (rows.error_entry); the query adds the reason and the attempt.
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
                ELSE 'worker ' || j.worker_id::text || ' is gone (no worker row)' END AS reason,
           (j.started_at IS NOT NULL OR (j.id, j.attempt) IN (
               SELECT s.id, s.attempt FROM unnest(%(started_ids)s::uuid[], %(started_attempts)s::int[]) AS s(id, attempt)
           )) AS charged
    FROM djtasks_job AS j
    LEFT JOIN dead AS d ON d.id = j.worker_id
    WHERE j.status = 'running'
      AND (d.id IS NOT NULL OR j.worker_id = ANY(%(worker_ids)s::uuid[])
           OR (j.claimed_at < %(cutoff)s AND pg_postmaster_start_time() < %(cutoff)s
               AND NOT EXISTS (SELECT 1 FROM djtasks_worker AS w WHERE w.id = j.worker_id)))
),
rescued AS (
    UPDATE djtasks_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled'
                      WHEN NOT l.charged OR j.attempt < j.max_attempts THEN 'queued' ELSE 'failed' END,
        attempt = CASE WHEN l.charged OR j.cancel_requested THEN j.attempt ELSE j.attempt - 1 END,
        worker_id = CASE WHEN j.cancel_requested OR (l.charged AND j.attempt >= j.max_attempts) THEN j.worker_id END,
        started_at = CASE WHEN l.charged OR j.cancel_requested THEN j.started_at END,
        run_at = CASE WHEN l.charged AND NOT j.cancel_requested AND j.attempt < j.max_attempts THEN %(now)s
                      ELSE j.run_at END,
        finished_at = CASE WHEN j.cancel_requested OR (l.charged AND j.attempt >= j.max_attempts) THEN %(now)s END,
        errors = CASE WHEN j.cancel_requested
                      THEN j.errors || jsonb_build_array(%(cancelled_error)s::jsonb
                           || jsonb_build_object(
                           'message', l.reason, 'attempt', j.attempt, 'worker_id', j.worker_id::text))
                      WHEN l.charged
                      THEN j.errors || jsonb_build_array(%(lost_error)s::jsonb
                           || jsonb_build_object(
                           'message', l.reason, 'attempt', j.attempt, 'worker_id', j.worker_id::text))
                      ELSE j.errors END
    FROM lost AS l
    WHERE j.id = l.id AND j.status = 'running' AND j.worker_id = l.worker_id
    RETURNING j.id, l.worker_id, j.status, j.attempt, j.queue, j.name, j.run_at, j.errors -> -1 AS error, l.charged
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'queued') AS q
)
SELECT COALESCE(d.id, r.worker_id) AS worker_id, r.id AS job_id, r.status, r.attempt, r.name, r.run_at,
       r.error::text AS error, r.charged
FROM dead AS d
FULL JOIN rescued AS r ON r.worker_id = d.id
CROSS JOIN notified;

-- name: maintenance_lock
-- Try to become the one process (across all hosts) running a maintenance service now, until this transaction ends.
-- Transaction-scoped on purpose: a session lock would stay on whichever server connection a transaction-mode
-- pooler (PgBouncer) lent for the statement, held for good once the client that took it dies.
SELECT pg_try_advisory_xact_lock(hashtextextended('djtasks.maintenance.' || %(name)s, 0)) AS locked;


-- name: job_insert_workflow_many
-- Enqueue the jobs of a workflow (chain, group, chord) with COPY: steps whose input is not ready yet are 'waiting'.
COPY djtasks_job (
    id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
    attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit, parent_id, group_id, on_success,
    trace_context
) FROM STDIN;

-- name: group_insert_many
-- Record the groups of a workflow: members in order, the counter a chord callback waits on, what waits for it.
INSERT INTO djtasks_group (id, total, remaining, members, on_success, parent_id, created_at)
SELECT g.id, g.total, g.total, ARRAY(SELECT jsonb_array_elements_text(g.members)::uuid), g.on_success, g.parent_id,
       %(now)s
FROM unnest(%(ids)s::uuid[], %(totals)s::int[], %(members)s::jsonb[], %(on_successes)s::jsonb[],
            %(parent_ids)s::uuid[]) AS g(id, total, members, on_success, parent_id);

-- name: job_handoff_many
-- Hand finished workflow jobs on, in the transaction that recorded them: a success releases the steps waiting on
-- it (result prepended to their arguments unless immutable) and counts down its group; a failure or cancel
-- cancels every step downstream, naming the job(s) that failed. Returns the groups it completed (remaining 0).
-- Group rows are locked in id order so completers finishing members of the same groups never deadlock; the
-- counter is decremented only for ids the caller's fenced finish wrote, so a rescued re-run counts once.
WITH RECURSIVE done AS (
    SELECT id, name, status, result, on_success, group_id
    FROM djtasks_job
    WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('succeeded', 'failed', 'cancelled')
      AND (on_success IS NOT NULL OR group_id IS NOT NULL)
),
next_steps AS (
    SELECT (e.value->>'id')::uuid AS id, (e.value->>'pass')::boolean AS pass, d.result
    FROM done AS d CROSS JOIN LATERAL jsonb_array_elements(d.on_success) AS e
    WHERE d.status = 'succeeded' AND jsonb_typeof(d.on_success) = 'array'
),
released AS (
    UPDATE djtasks_job AS j
    SET status = 'queued',
        args = CASE WHEN n.pass THEN jsonb_build_array(n.result) || j.args ELSE j.args END,
        run_at = greatest(j.run_at, %(now)s)
    FROM next_steps AS n
    WHERE j.id = n.id AND j.status = 'waiting'
    RETURNING j.queue, j.run_at
),
doomed(id, origin) AS (
    SELECT d.id, d.id FROM done AS d WHERE d.status <> 'succeeded'
    UNION
    SELECT (e.value->>'id')::uuid, x.origin
    FROM doomed AS x
    JOIN djtasks_job AS j ON j.id = x.id
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(j.on_success) = 'array' THEN j.on_success ELSE '[]'::jsonb END
        || coalesce((SELECT g.on_success FROM djtasks_group AS g WHERE g.id = j.group_id), '[]'::jsonb)
    ) AS e
),
why AS (
    SELECT x.id, string_agg(DISTINCT 'job ' || o.id::text || ' (' || o.name || ') '
                            || CASE WHEN o.status = 'failed' THEN 'failed' ELSE 'was cancelled' END, ', ') AS reason
    FROM doomed AS x JOIN done AS o ON o.id = x.origin
    WHERE x.id <> x.origin
    GROUP BY x.id
),
cancelled AS (
    UPDATE djtasks_job AS j
    SET status = 'cancelled', finished_at = %(now)s,
        errors = j.errors || jsonb_build_array(%(cancelled_error)s::jsonb || jsonb_build_object(
            'message', 'cancelled: upstream ' || w.reason, 'attempt', j.attempt))
    FROM why AS w
    WHERE j.id = w.id AND j.status = 'waiting'
    RETURNING j.id
),
named AS (
    -- already cancelled by an earlier upstream failure (a chord's other header jobs): name these ones too
    UPDATE djtasks_job AS j
    SET errors = jsonb_set(j.errors, '{-1,message}', to_jsonb((j.errors->-1->>'message') || ', ' || w.reason))
    FROM why AS w
    WHERE j.id = w.id AND j.status = 'cancelled' AND j.errors->-1->>'message' LIKE 'cancelled: upstream %%'
      AND position(w.reason IN j.errors->-1->>'message') = 0
    RETURNING j.id
),
counted AS (
    SELECT group_id, count(*) AS n FROM done WHERE status = 'succeeded' AND group_id IS NOT NULL GROUP BY group_id
),
locked AS (
    SELECT g.id FROM djtasks_group AS g WHERE g.id IN (SELECT group_id FROM counted) ORDER BY g.id FOR UPDATE
),
decremented AS (
    UPDATE djtasks_group AS g
    SET remaining = g.remaining - c.n
    FROM counted AS c JOIN locked AS l ON l.id = c.group_id
    WHERE g.id = c.group_id
    RETURNING g.id, g.remaining, g.on_success
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM released WHERE run_at <= %(now)s) AS q
)
SELECT (SELECT n FROM notified) AS notified,
       (SELECT count(*) FROM released) AS released,
       (SELECT count(*) FROM cancelled) AS cancelled,
       ARRAY(SELECT id FROM decremented WHERE remaining = 0 AND on_success IS NOT NULL) AS completed;

-- name: job_stranded_many
-- Workflow jobs that ended without success while a step still waits on them, directly or through their group: a
-- hand-off that never ran (a worker that died between expiring a step in its claim and handing it on). The
-- handoffs service hands them on again; job_handoff_many is idempotent for finished jobs. Walks waiting steps only.
(SELECT p.id
 FROM djtasks_job AS w
 JOIN djtasks_job AS p ON p.id = w.parent_id
 WHERE w.status = 'waiting' AND p.status IN ('failed', 'cancelled'))
UNION
(SELECT m.id
 FROM djtasks_job AS w
 JOIN djtasks_group AS g ON g.id = w.parent_id
 JOIN djtasks_job AS m ON m.id = ANY(g.members)
 WHERE w.status = 'waiting' AND m.status IN ('failed', 'cancelled'))
LIMIT %(limit)s;

-- name: group_release_many
-- Release the jobs waiting for completed groups (chord callbacks) with the members' results in member order.
-- Its own statement after job_handoff_many, in the same transaction: its fresh snapshot sees the results of every
-- member, as each member's transaction committed before this one could take the group row's lock.
WITH waiting AS (
    SELECT (e.value->>'id')::uuid AS id, (e.value->>'pass')::boolean AS pass, g.members
    FROM djtasks_group AS g CROSS JOIN LATERAL jsonb_array_elements(g.on_success) AS e
    WHERE g.id = ANY(%(ids)s::uuid[])
),
released AS (
    UPDATE djtasks_job AS j
    SET status = 'queued',
        args = CASE WHEN w.pass THEN jsonb_build_array((
            SELECT coalesce(jsonb_agg(m.result ORDER BY u.ord), '[]'::jsonb)
            FROM unnest(w.members) WITH ORDINALITY AS u(id, ord)
            LEFT JOIN djtasks_job AS m ON m.id = u.id
        )) || j.args ELSE j.args END,
        run_at = greatest(j.run_at, %(now)s)
    FROM waiting AS w
    WHERE j.id = w.id AND j.status = 'waiting'
    RETURNING j.id, j.queue, j.run_at
),
notified AS (
    SELECT count(pg_notify('djtasks', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM released WHERE run_at <= %(now)s) AS q
)
SELECT r.id FROM released AS r CROSS JOIN notified;

-- name: group_get
-- One group by id, for GroupResult and the admin.
SELECT id, total, remaining, members, on_success::text AS on_success, parent_id, created_at
FROM djtasks_group
WHERE id = %(id)s;

-- name: group_status_count
-- How many of a group's members are in each status (GroupResult.ready() and friends; the group index only).
SELECT status, count(*) AS n FROM djtasks_job WHERE group_id = %(id)s GROUP BY status;

-- name: job_get_many
-- Several jobs by id (a group's members), with what JobResult reads.
SELECT id, name, queue, priority, status, args::text AS args, kwargs::text AS kwargs, run_at, enqueued_at,
       started_at, finished_at, expires_at, attempt, max_attempts, worker_id, result::text AS result,
       errors::text AS errors, progress::text AS progress, unique_key, group_id, parent_id,
       on_success::text AS on_success, false AS parent_is_group
FROM djtasks_job
WHERE id = ANY(%(ids)s::uuid[]);

-- name: job_insert_unique
-- Enqueue a unique job unless one with its key is queued or running (or, with unique_for, was enqueued since
-- %(since)s); the partial unique index settles concurrent enqueuers and ON CONFLICT keeps the caller's
-- transaction intact. Returns the id inserted, or the existing job's id (NULL both: a concurrent twin won).
WITH existing AS (
    SELECT id FROM djtasks_job
    WHERE unique_key = %(unique_key)s
      AND (status IN ('queued', 'running') OR (%(since)s::timestamptz IS NOT NULL AND enqueued_at >= %(since)s))
    ORDER BY enqueued_at DESC
    LIMIT 1
),
inserted AS (
    INSERT INTO djtasks_job (
        id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, expires_at,
        attempt, max_attempts, errors, cancel_requested, time_limit, soft_time_limit, unique_key, trace_context
    )
    SELECT %(id)s, %(name)s, %(queue)s, %(priority)s, 'queued', %(args)s::jsonb, %(kwargs)s::jsonb, %(run_at)s,
           %(now)s, %(expires_at)s, 0, %(max_attempts)s, '[]'::jsonb, false, %(time_limit)s, %(soft_time_limit)s,
           %(unique_key)s, %(trace_context)s::jsonb
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT (unique_key) WHERE status IN ('queued', 'running') AND unique_key IS NOT NULL DO NOTHING
    RETURNING id, queue, run_at
),
notified AS (
    SELECT count(pg_notify('djtasks', i.queue)) AS n FROM inserted AS i WHERE i.run_at <= %(now)s
)
SELECT (SELECT id FROM inserted) AS inserted_id, (SELECT id FROM existing) AS existing_id,
       (SELECT n FROM notified) AS notified;

-- name: job_get_by_unique_key
-- The active job holding a unique key (after job_insert_unique lost a race to a concurrent enqueuer).
SELECT id FROM djtasks_job
WHERE unique_key = %(unique_key)s AND status IN ('queued', 'running')
ORDER BY enqueued_at DESC
LIMIT 1;

-- name: job_progress_set
-- Store a running job's progress (JobContext.set_progress, coalesced by the caller); fenced by its attempt.
UPDATE djtasks_job SET progress = %(progress)s::jsonb
WHERE id = %(id)s AND status = 'running' AND attempt = %(attempt)s;
