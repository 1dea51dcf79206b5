"""Flow control against the real database: limited claims from concurrent connections, the rate limiter's
state in the queue row, pause and resume, settings vs run-time options, and the operator entry points."""

from __future__ import annotations

import io
import random
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

import djtasks
from djtasks.ids import uuid7
from djtasks.models import Job, Queue
from djtasks.queues import QueueOptionError, flow_state, set_queue_options
from djtasks.worker.db import WorkerConnection
from djtasks.worker.flowcontrol import FlowControl
from tests.conftest import drain
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = {"default": {}, "other": {}, "slow": {}}


def enqueue(n: int, queue: str) -> None:
    add.bulk_delay([add.s(i, i).set(queue=queue) for i in range(n)])


def succeeded(row):
    return {"id": row["id"], "attempt": row["attempt"], "status": "succeeded", "finished_at": timezone.now()}


def running(store, queue: str) -> int:
    """Jobs holding a slot of the queue's limit: ``running`` rows, started or only claimed (nobody starts the
    claims here, so none has a start mark)."""
    return next((r["running"] + r["claimed"] for r in store.queue_stats_running() if r["queue"] == queue), 0)


def test_four_claimers_on_separate_connections_never_exceed_concurrency():
    set_queue_options("slow", concurrency=3)
    enqueue(150, "slow")
    stop = threading.Event()
    samples: list[int] = []
    claimed: list[int] = []
    errors: list[BaseException] = []

    def claimer() -> None:
        db, check = WorkerConnection(), WorkerConnection()
        worker_id = uuid7()
        flow = FlowControl(["slow"])
        held: list[dict] = []
        try:
            flow.refresh(db.store)
            assert flow.limited == ["slow"] and flow.fast == []
            while not stop.is_set():
                result = flow.claim(db.store, now=timezone.now(), worker_id=worker_id, free=3 - len(held))
                held += result.rows
                claimed.append(len(result.rows))
                samples.append(running(check.store, "slow"))  # checked right after every claim
                time.sleep(random.uniform(0, 0.004))
                if held and random.random() < 0.6:
                    k = random.randint(1, len(held))
                    done, held = held[:k], held[k:]
                    db.store.job_finish_many(worker_id=worker_id, outcomes=[succeeded(r) for r in done])
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()
            check.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while Job.objects.filter(status="queued").exists() and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(samples) > 50
    assert max(samples) <= 3, f"{max(samples)} running at once"
    assert max(samples) == 3  # the limit was reached, not merely undershot
    assert not Job.objects.filter(status="queued").exists()


def test_concurrency_counts_jobs_running_fleet_wide_and_frees_on_release(store):
    set_queue_options("slow", concurrency=2)
    enqueue(5, "slow")
    flow = FlowControl(["slow"])
    flow.refresh(store)
    first, second = uuid7(), uuid7()
    assert len(flow.claim(store, now=timezone.now(), worker_id=first, free=4).rows) == 2
    assert flow.claim(store, now=timezone.now(), worker_id=second, free=4).rows == []
    # A shutdown hands the first worker's jobs back: their slots free at once.
    store.job_release_many(now=timezone.now(), worker_id=first)
    assert len(flow.claim(store, now=timezone.now(), worker_id=second, free=4).rows) == 2
    # A dead worker's jobs stop counting once rescued.
    store.worker_rescue_many(now=timezone.now(), worker_ids=[second], reason="test")
    assert len(flow.claim(store, now=timezone.now(), worker_id=first, free=1).rows) == 1


def test_rate_limit_state_lives_in_the_queue_row(store):
    set_queue_options("slow", rate_limit="10/s")
    enqueue(20, "slow")
    flow = FlowControl(["slow"])
    flow.refresh(store)
    now = timezone.now()
    got = flow.claim(store, now=now, worker_id=uuid7(), free=4)
    assert len(got.rows) == 1  # spread out: one start now, not a burst
    assert Queue.objects.get(name="slow").rate_tat == now + timedelta(seconds=0.1)
    held = flow.claim(store, now=now + timedelta(seconds=0.05), worker_id=uuid7(), free=4)
    assert held.rows == [] and held.wait == pytest.approx(0.05, abs=1e-3)
    assert len(flow.claim(store, now=now + timedelta(seconds=0.1), worker_id=uuid7(), free=4).rows) == 1


def test_job_name_concurrency_limits_a_job_in_any_queue(store):
    from tests.testapp.limited_tasks import one_at_a_time

    for queue in ("default", "other", "default"):
        one_at_a_time.apply_async(queue=queue)
    enqueue(3, "default")
    flow = FlowControl(["default", "other"])
    flow.sync(store, timezone.now())
    flow.refresh(store)
    assert flow.job_limits == {"tests.testapp.limited_tasks.one_at_a_time": 1}
    listing = io.StringIO()
    call_command("djtasks", "queue", stdout=listing)
    assert "job tests.testapp.limited_tasks.one_at_a_time: concurrency=1" in listing.getvalue()
    worker = uuid7()
    plain = store.job_claim_skipping_many(
        now=timezone.now(), worker_id=worker, queues=flow.fast, limit=10, skip_names=list(flow.job_limits)
    )
    assert {r["name"] for r in plain} == {"tests.testapp.tasks.add"}
    limited = flow.claim(store, now=timezone.now(), worker_id=worker, free=4).rows
    assert [r["name"] for r in limited] == ["tests.testapp.limited_tasks.one_at_a_time"]
    assert flow.claim(store, now=timezone.now(), worker_id=uuid7(), free=4).rows == []
    store.job_finish_many(worker_id=worker, outcomes=[succeeded(limited[0])])
    assert len(flow.claim(store, now=timezone.now(), worker_id=uuid7(), free=4).rows) == 1


def test_pause_and_resume(store):
    enqueue(3, "other")
    djtasks.pause_queue("other")
    flow = FlowControl(["default", "other"])
    flow.refresh(store)
    assert flow.fast == ["default"] and flow.limited == []
    assert drain(queues=flow.fast) == 0
    add.apply_async(args=(1, 1), queue="other")  # enqueueing still works
    assert Job.objects.filter(queue="other", status="queued").count() == 4
    djtasks.resume_queue("other")
    flow.refresh(store)
    assert flow.fast == ["default", "other"]
    assert drain(queues=flow.fast) == 4


def test_a_change_notifies_listening_workers(store):
    listener = WorkerConnection()
    try:
        listener.store.queue_options_listen()
        djtasks.pause_queue("slow")
        deadline = time.monotonic() + 5
        got = []
        while not got and time.monotonic() < deadline:
            got = list(listener.connection.notifies(timeout=0.2, stop_after=1))
        assert got and got[0].channel == "djtasks_queue" and got[0].payload == "slow"
    finally:
        listener.close()


@override_settings(DJTASKS={"QUEUES": {"default": {}, "other": {"concurrency": 4, "rate_limit": "100/m"}}})
def test_settings_are_defaults_and_run_time_changes_win_until_reset(store):
    flow = FlowControl(["default", "other"])
    flow.sync(store, timezone.now())
    row = Queue.objects.get(kind="queue", name="other")
    assert (row.concurrency, row.rate_limit, row.paused, row.overrides) == (4, "100/m", False, [])
    set_queue_options("other", concurrency=2, paused=True)
    with override_settings(DJTASKS={"QUEUES": {"default": {}, "other": {"concurrency": 8, "rate_limit": "5/s"}}}):
        flow.sync(store, timezone.now())  # a deploy with new settings: the overridden options stay
        row.refresh_from_db()
        assert (row.concurrency, row.rate_limit, row.paused) == (2, "5/s", True)
        assert sorted(row.overrides) == ["concurrency", "paused"]
        state = djtasks.queues.reset_queue_options("other")
        assert (state.concurrency, state.rate_text, state.paused, state.overrides) == (8, "5/s", False, ())
    # Before any worker wrote a row, the settings are what the dashboard shows.
    Queue.objects.all().delete()
    other = flow_state().queues["other"]
    assert (other.concurrency, other.rate_text) == (4, "100/m")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"concurrency": 0}, ["'slow'", "0"]),
        ({"concurrency": "-3"}, ["'slow'", "-3"]),
        ({"rate_limit": "100 per minute"}, ["'slow'", "'100 per minute'"]),
        ({"paused": "yes"}, ["'slow'", "'yes'"]),
    ],
)
def test_bad_options_change_nothing(changes, words):
    set_queue_options("slow", concurrency=5)
    with pytest.raises(QueueOptionError) as info:
        set_queue_options("slow", **{"concurrency": 2, "rate_limit": "1/s", **changes})
    for word in words:
        assert word in str(info.value)
    row = Queue.objects.get(name="slow")
    assert (row.concurrency, row.rate_limit) == (5, "")


def test_unknown_queue():
    with pytest.raises(QueueOptionError, match="unknown queue 'emails'"):
        djtasks.pause_queue("emails")
    with pytest.raises(ValueError, match="emails"):
        set_queue_options("emails", concurrency=3)
    assert not Queue.objects.exists()


def test_management_commands():
    out = io.StringIO()
    call_command("djtasks", "pause", "slow", stdout=out)
    assert Queue.objects.get(name="slow").paused
    call_command("djtasks", "resume", "slow", stdout=out)
    assert not Queue.objects.get(name="slow").paused
    call_command("djtasks", "queue", "slow", "--concurrency", "3", "--rate-limit", "60/s", stdout=out)
    row = Queue.objects.get(name="slow")
    assert (row.concurrency, row.rate_limit) == (3, "60/s")
    assert "slow: concurrency=3 rate_limit=60/s running (set at run time" in out.getvalue()
    for args, words in [
        (["pause", "emails"], "unknown queue 'emails'"),
        (["queue", "slow", "--concurrency", "0"], "queue 'slow': concurrency must be a positive int"),
        (["queue", "slow", "--rate-limit", "100 per minute"], "'100 per minute'"),
        (["queue", "--concurrency", "2"], "name the queue"),
    ]:
        with pytest.raises(CommandError, match=words):
            call_command("djtasks", *args, stdout=out)
    row.refresh_from_db()
    assert (row.concurrency, row.rate_limit) == (3, "60/s")
    call_command("djtasks", "queue", "slow", "--reset", stdout=out)
    row.refresh_from_db()
    assert (row.concurrency, row.rate_limit, row.overrides) == (None, "", [])
    listing = io.StringIO()
    call_command("djtasks", "queue", stdout=listing)
    assert "default: concurrency=none rate_limit=none running" in listing.getvalue()


def test_status_shows_limit_fullness_and_paused(store):
    set_queue_options("slow", concurrency=3, paused=True)
    enqueue(2, "slow")
    out = io.StringIO()
    call_command("djtasks", "status", stdout=out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("slow"))
    assert "(paused)" in line and "3 at once" in line
    import json

    out = io.StringIO()
    call_command("djtasks", "status", "--json", stdout=out)
    slow = next(q for q in json.loads(out.getvalue())["queues"] if q["name"] == "slow")
    assert (slow["concurrency"], slow["paused"], slow["fullness"], slow["limit"]) == (3, True, 0.0, "3 at once")


class CountingProducer:
    """A real producer in a thread, claiming into a list; counts its limited claims (no job ever finishes
    unless the test finishes it)."""

    def __init__(self, queues, poll_interval):
        from djtasks.worker.ledger import Ledger
        from djtasks.worker.producer import Producer, ledger_capacity

        self.rows: list[dict] = []
        ledger = Ledger(ledger_capacity(8))

        def submit(rows):  # held in the ledger (claimed, never started) as a worker process would
            ledger.claim(rows)
            self.rows.extend(rows)

        self.producer = Producer(
            worker_id=uuid7(),
            queues=queues,
            slots=8,
            submit=submit,
            poll_interval=poll_interval,
            listen=True,
            ledger=ledger,
        )
        self.claims = 0
        store = self.producer.db.store
        claim = store.job_claim_limited_many

        def counted(**kwargs):
            self.claims += 1
            return claim(**kwargs)

        store.job_claim_limited_many = counted
        self.thread = threading.Thread(target=self.producer.run)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.producer.stop()
        self.thread.join(10)


def test_a_full_limit_sleeps_until_a_finishing_job_wakes_it(store):
    set_queue_options("slow", concurrency=1)
    enqueue(3, "slow")
    other = uuid7()
    flow = FlowControl(["slow"])
    flow.refresh(store)
    [held] = flow.claim(store, now=timezone.now(), worker_id=other, free=4).rows  # another worker's slot
    with CountingProducer(["slow"], poll_interval=5.0) as p:
        time.sleep(1.5)
        assert p.rows == []
        assert p.claims <= 2, f"{p.claims} claims while the limit was full: busy polling"
        began = time.monotonic()
        store.job_finish_many(worker_id=other, outcomes=[succeeded(held)])
        store.queue_notify_many(queues=["slow"])  # what the completer sends after a limited job's outcome
        deadline = time.monotonic() + 3
        while not p.rows and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(p.rows) == 1
        assert time.monotonic() - began < 1.0, "woken by the notification, not the 5 s poll"


def test_a_rate_limit_sleeps_until_the_next_start_is_allowed():
    set_queue_options("slow", rate_limit="4/s")
    enqueue(5, "slow")
    with CountingProducer(["slow"], poll_interval=5.0) as p:
        began = time.monotonic()
        deadline = began + 5
        while len(p.rows) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        took = time.monotonic() - began
    assert len(p.rows) == 5
    assert 0.9 <= took < 2.5  # one start every 0.25 s, woken by the limiter's own timing (poll is 5 s)
    assert p.claims <= 12, f"{p.claims} claims for 5 starts: busy polling"


def test_a_job_name_at_its_limit_costs_no_busy_polling_and_other_jobs_run(store):
    from tests.testapp.limited_tasks import one_at_a_time

    for _ in range(3):
        one_at_a_time.delay()
    flow = FlowControl(["default"])
    flow.sync(store, timezone.now())
    flow.refresh(store)
    other = uuid7()
    [held] = flow.claim(store, now=timezone.now(), worker_id=other, free=4).rows
    with CountingProducer(["default"], poll_interval=5.0) as p:
        time.sleep(0.5)
        enqueue(3, "default")  # unlimited jobs beside them run at once
        time.sleep(1.0)
        assert sorted(r["name"] for r in p.rows) == ["tests.testapp.tasks.add"] * 3
        assert p.claims <= 4, f"{p.claims} claims while the job name was at its limit: busy polling"
        store.job_finish_many(worker_id=other, outcomes=[succeeded(held)])
        store.queue_notify_many(queues=["default"])
        deadline = time.monotonic() + 3
        while len(p.rows) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r["name"] for r in p.rows[3:]] == ["tests.testapp.limited_tasks.one_at_a_time"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"concurrency": 0}, "queue 'emails': concurrency must be a positive int, got 0"),
        ({"rate_limit": "100 per minute"}, "'100 per minute'"),
    ],
)
def test_system_check_reports_a_bad_queue_option_with_a_hint(options, words):
    from djtasks.checks import check_settings

    with override_settings(DJTASKS={"QUEUES": {"default": {}, "emails": options}}):
        [error] = check_settings()
    assert error.id == "djtasks.E001" and words in error.msg and error.hint


def test_limited_claim_marks_workflow_steps_and_expired_jobs_like_the_plain_claim(store):
    set_queue_options("slow", concurrency=5)
    (add.s(1, 1) | add.s(2)).apply_async(queue="slow")
    add.apply_async(args=(3, 3), queue="slow", expires=0.05)
    time.sleep(0.1)
    flow = FlowControl(["slow"])
    flow.refresh(store)
    rows = flow.claim(store, now=timezone.now(), worker_id=uuid7(), free=4).rows
    assert sorted((r["status"], r["workflow"]) for r in rows) == [("cancelled", False), ("running", True)]
    # The same UPDATE as job_claim_many (issue 10): claimed_at set, started_at NULL until the function starts;
    # the expired job's error entry built by rows.error_entry.
    by_status = {r["status"]: Job.objects.get(id=r["id"]) for r in rows}
    claimed, expired = by_status["running"], by_status["cancelled"]
    assert claimed.claimed_at is not None and claimed.started_at is None
    assert expired.started_at is None and expired.finished_at is not None
    [entry] = expired.errors
    assert (
        entry["type"] == "djtasks.exceptions.JobExpired" and entry["attempt"] == 0 and "expired at" in entry["message"]
    )


def test_claim_skipping_limited_names_marks_the_claim_like_the_plain_claim(store):
    worker = uuid7()
    enqueue(2, "default")
    rows = store.job_claim_skipping_many(
        now=timezone.now(), worker_id=worker, queues=["default"], limit=5, skip_names=["nothing.limited"]
    )
    assert len(rows) == 2 and {r["status"] for r in rows} == {"running"}
    for job in Job.objects.filter(id__in=[r["id"] for r in rows]):
        assert (job.worker_id, job.started_at) == (worker, None) and job.claimed_at is not None
