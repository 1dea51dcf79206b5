"""The hot queries keep using their partial indexes with a large backlog and a large history, after ANALYZE.

A claim that walks the primary key or sorts every waiting job gets slower as the table grows; these tests
fail if the planner would choose such a plan for any hot-path query.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone

from djtasks.store import queries
from djtasks.worker.db import WorkerConnection

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED_ROWS = 200_000
QUEUED_ROWS = 40_000


@pytest.fixture
def big_table():
    db = WorkerConnection()
    conn = db.connection
    conn.execute(
        "INSERT INTO djtasks_job (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at, finished_at,"
        " attempt, max_attempts, errors, cancel_requested)"
        " SELECT gen_random_uuid(), 'x', 'default', 0, CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'succeeded' END,"
        " '[]', '{}', now() - interval '2 days', now() - interval '2 days', now() - interval '1 day' + i * interval '1 ms',"
        " 1, 1, '[]', false FROM generate_series(1, %s) AS i",
        (FINISHED_ROWS,),
    )
    conn.execute(
        "INSERT INTO djtasks_job (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at,"
        " attempt, max_attempts, errors, cancel_requested)"
        " SELECT gen_random_uuid(), 'x', CASE WHEN i %% 2 = 0 THEN 'default' ELSE 'other' END, (i %% 5) - 2, 'queued',"
        " '[]', '{}', now() + (i %% 7 - 3) * interval '1 minute', now(), 0, 1, '[]', false"
        " FROM generate_series(1, %s) AS i",
        (QUEUED_ROWS,),
    )
    conn.execute("ANALYZE djtasks_job")
    yield conn
    db.close()


def plan_nodes(conn, name: str, params: dict) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + queries()[name], params)
        raw = cur.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    nodes, stack = [], [plan]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    return nodes


def run_queued(conn, worker_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    """Make ``n`` queued jobs running under ``worker_id`` (attempt 1) behind the statistics' back; their ids."""
    rows = conn.execute(
        "UPDATE djtasks_job SET status = 'running', attempt = 1, worker_id = %s, claimed_at = now()"
        " WHERE id IN (SELECT id FROM djtasks_job WHERE status = 'queued' LIMIT %s) RETURNING id",
        (worker_id, n),
    ).fetchall()
    return [row[0] for row in rows]


def scans_of_job_table(nodes: list[dict]) -> list[tuple[str, str | None]]:
    return [(n["Node Type"], n.get("Index Name")) for n in nodes if n.get("Relation Name") == "djtasks_job"]


def used_indexes(nodes: list[dict]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


def assert_no_full_scan(nodes: list[dict]) -> None:
    for kind, index in scans_of_job_table(nodes):
        assert kind != "Seq Scan", "sequential scan of djtasks_job"
        if index == "djtasks_job_pkey":
            # only as a lookup by id of rows found elsewhere, never as an ordered walk
            node = next(n for n in nodes if n.get("Index Name") == index)
            assert "id" in node.get("Index Cond", ""), node


@pytest.mark.parametrize("queues", [["default"], ["default", "other"]])
def test_claim_walks_the_claim_index_and_never_sorts_the_backlog(big_table, queues):
    nodes = plan_nodes(
        big_table,
        "job_claim_many",
        {
            "now": timezone.now(),
            "worker_id": uuid.uuid4(),
            "queues": queues,
            "limit": 10,
            "expired_error": "{}",
        },
    )
    scans = scans_of_job_table(nodes)
    assert ("Index Scan", "djtasks_job_claim") in scans, scans
    assert_no_full_scan(nodes)
    for node in nodes:
        if node["Node Type"] == "Sort":
            assert node["Plan Rows"] <= 10 * len(queues), f"sorts {node['Plan Rows']} rows: the backlog"


def test_next_run_at_uses_the_claim_index(big_table):
    nodes = plan_nodes(
        big_table, "job_next_run_at", {"queues": ["default"], "horizon": timezone.now(), "skip_names": []}
    )
    assert "djtasks_job_claim" in used_indexes(nodes), scans_of_job_table(nodes)
    assert_no_full_scan(nodes)


def test_limited_claim_walks_the_claim_index_and_counts_through_the_running_index(big_table):
    nodes = plan_nodes(
        big_table,
        "job_claim_limited_many",
        {
            "now": timezone.now(),
            "worker_id": uuid.uuid4(),
            "queues": ["default", "other"],
            "caps": [3, 10],
            "names_only": [False, True],
            "open_names": ["tests.testapp.tasks.add"],
            "name_caps": [1],
            "full_names": ["tests.testapp.tasks.echo"],
            "rated_queues": ["default"],
            "intervals": [0.1],
            "limit": 10,
            "expired_error": "{}",
        },
    )
    assert "djtasks_job_claim" in used_indexes(nodes), scans_of_job_table(nodes)
    assert_no_full_scan(nodes)
    nodes = plan_nodes(
        big_table, "job_running_count_many", {"queues": ["default"], "jobs": ["tests.testapp.tasks.add"]}
    )
    assert used_indexes(nodes) == {"djtasks_job_running"}, scans_of_job_table(nodes)
    assert_no_full_scan(nodes)


@pytest.mark.parametrize("name", ["job_finish_many", "job_release_many", "job_get", "job_cancel_many"])
def test_by_id_queries_use_the_primary_key_or_running_index(big_table, name):
    ids = [uuid.uuid4() for _ in range(50)]
    params = {
        "job_finish_many": {
            "worker_id": uuid.uuid4(),
            "ids": ids,
            "attempts": [1] * 50,
            "statuses": ["succeeded"] * 50,
            "results": [None] * 50,
            "errors": [None] * 50,
            "run_ats": [None] * 50,
            "finished_ats": [timezone.now()] * 50,
            "started_ats": [timezone.now()] * 50,
            "mark_ids": ids[:5],
            "mark_attempts": [1] * 5,
            "mark_started_ats": [timezone.now()] * 5,
        },
        "job_release_many": {
            "now": timezone.now(),
            "worker_id": uuid.uuid4(),
            "keep_ids": ids[:3],
            "cancelled_error": "{}",
        },
        "job_get": {"id": ids[0]},
        "job_cancel_many": {"now": timezone.now(), "ids": ids, "terminate": False, "cancelled_error": "{}"},
    }[name]
    nodes = plan_nodes(big_table, name, params)
    assert used_indexes(nodes) & {"djtasks_job_pkey", "djtasks_job_running"}, scans_of_job_table(nodes)
    assert_no_full_scan(nodes)


def test_finish_finds_its_rows_by_primary_key_not_through_the_running_index(big_table):
    """Statistics taken while nothing ran say the running index is nearly empty; during a drain it holds this
    worker's claimed rows and, until a vacuum, every row it finished since. Recording a batch must look its rows
    up by id (cost: the batch) rather than walk this worker's running-index entries (cost: all it ever held)."""
    worker_id = uuid.uuid4()
    ids = run_queued(big_table, worker_id, 2000)
    now = timezone.now()
    batch = ids[:100]
    for marks in ([], ids[100:110]):
        params = {
            "worker_id": worker_id,
            "ids": batch,
            "attempts": [1] * len(batch),
            "statuses": ["succeeded"] * len(batch),
            "results": ["null"] * len(batch),
            "errors": [None] * len(batch),
            "run_ats": [None] * len(batch),
            "finished_ats": [now] * len(batch),
            "started_ats": [now] * len(batch),
            "mark_ids": marks,
            "mark_attempts": [1] * len(marks),
            "mark_started_ats": [now] * len(marks),
        }
        nodes = plan_nodes(big_table, "job_finish_many", params)
        assert used_indexes(nodes) == {"djtasks_job_pkey"}, scans_of_job_table(nodes)


def test_terminate_poll_uses_its_own_small_index(big_table):
    """The supervisors poll every 0.5 s; the running index would make each poll read every entry of their workers."""
    nodes = plan_nodes(big_table, "job_terminate_requested_many", {"worker_ids": [uuid.uuid4(), uuid.uuid4()]})
    assert used_indexes(nodes) == {"djtasks_job_terminate"}, scans_of_job_table(nodes)


def test_prune_walks_the_finished_index(big_table):
    nodes = plan_nodes(
        big_table,
        "job_prune_many",
        {
            "statuses": ["succeeded", "cancelled"],
            "before": timezone.now(),
            "limit": 1000,
        },
    )
    assert "djtasks_job_finished" in used_indexes(nodes), scans_of_job_table(nodes)
    assert_no_full_scan(nodes)


@pytest.mark.parametrize(
    "name",
    [
        "job_handoff_many",
        "group_release_many",
        "group_status_count",
        "job_insert_unique",
        "job_get_many",
        "queue_stats_workflow_waiting",
    ],
)
def test_workflow_and_unique_queries_never_scan_the_table(big_table, name):
    ids = [uuid.uuid4() for _ in range(50)]
    now = timezone.now()
    params = {
        "job_handoff_many": {"now": now, "ids": ids, "cancelled_error": "{}"},
        "group_release_many": {"now": now, "ids": ids[:2]},
        "group_status_count": {"id": ids[0]},
        "job_insert_unique": {
            "now": now,
            "unique_key": "k",
            "since": now,
            "id": ids[0],
            "name": "x",
            "queue": "default",
            "priority": 0,
            "args": "[]",
            "kwargs": "{}",
            "run_at": now,
            "expires_at": None,
            "max_attempts": 1,
            "time_limit": None,
            "soft_time_limit": None,
            "trace_context": None,
        },
        "job_get_many": {"ids": ids},
        "queue_stats_workflow_waiting": {},
    }[name]
    nodes = plan_nodes(big_table, name, params)
    assert_no_full_scan(nodes)


SMALL_QUEUED_ROWS = 20_000


@pytest.fixture
def small_table():
    """A fresh backlog of 20,000 jobs, ANALYZEd while all were queued (as after a deploy or a burst), and 400
    of them since claimed by one worker: the statistics say nothing runs, as they do until autovacuum's next
    ANALYZE. A table this small is where the planner prices a sequential scan below a few hundred probes."""
    db = WorkerConnection()
    conn = db.connection
    conn.execute(
        "INSERT INTO djtasks_job (id, name, queue, priority, status, args, kwargs, run_at, enqueued_at,"
        " attempt, max_attempts, errors, cancel_requested)"
        " SELECT gen_random_uuid(), 'x', 'default', 0, 'queued', '[]', '{}', now() - interval '1 minute', now(),"
        " 0, 1, '[]', false FROM generate_series(1, %s)",
        (SMALL_QUEUED_ROWS,),
    )
    conn.execute("ANALYZE djtasks_job")
    worker_id = uuid.uuid4()
    ids = run_queued(conn, worker_id, 400)
    yield conn, worker_id, ids
    db.close()


def assert_batch_never_loops_per_row(nodes: list[dict]) -> None:
    """No nested loop runs the batch (an unnest) once for every row it found: that is a batch-size squared."""
    for node in nodes:
        if node["Node Type"] != "Nested Loop":
            continue
        for child in node["Plans"]:
            if child.get("Parent Relationship") == "Inner":
                inner = child["Plans"][0] if child["Node Type"] == "Materialize" else child
                assert inner["Node Type"] != "Function Scan", f"the batch is looped over per row: {node}"


def test_claim_and_finish_probe_by_id_in_a_small_table(small_table):
    """In a table of some thousands of rows a join lets the planner hash the whole table to meet a claim's
    candidates, or loop over a finish's batch for each row it expects (one, by the statistics) and finds
    (hundreds): measured 8 ms a claim and 15 ms a finish of 200 jobs in 20,000 rows, against 2 ms each."""
    conn, worker_id, ids = small_table
    now = timezone.now()
    nodes = plan_nodes(
        conn,
        "job_claim_many",
        {"now": now, "worker_id": uuid.uuid4(), "queues": ["default"], "limit": 200, "expired_error": "{}"},
    )
    assert ("Seq Scan", None) not in scans_of_job_table(nodes), scans_of_job_table(nodes)
    batch, marks = ids[:200], ids[200:210]
    nodes = plan_nodes(
        conn,
        "job_finish_many",
        {
            "worker_id": worker_id,
            "ids": batch,
            "attempts": [1] * len(batch),
            "statuses": ["succeeded"] * len(batch),
            "results": ["null"] * len(batch),
            "errors": [],
            "run_ats": [],
            "finished_ats": [now] * len(batch),
            "started_ats": [now] * len(batch),
            "mark_ids": marks,
            "mark_attempts": [1] * len(marks),
            "mark_started_ats": [now] * len(marks),
        },
    )
    assert ("Seq Scan", None) not in scans_of_job_table(nodes), scans_of_job_table(nodes)
    assert_batch_never_loops_per_row(nodes)
