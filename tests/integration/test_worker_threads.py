"""The worker's heartbeat thread against the real database: CPU-bound neighbours, a row that vanished, a
supervisor that died."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from django.utils import timezone

from djtasks.ids import uuid7
from djtasks.models import Worker
from djtasks.worker.heartbeat import MAX_SWITCH_INTERVAL_S, Heartbeat, cap_switch_interval
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def register_on(worker_id):
    def register(db):
        db.store.worker_register(
            now=timezone.now(), id=worker_id, hostname="test", pid=os.getpid(), queues="[]", concurrency=1
        )

    return register


def burn(seconds):
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        for i in range(1000):
            n += i
    return n


def test_cap_switch_interval_keeps_cpu_bound_threads_from_holding_the_gil():
    original = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.5)
        assert cap_switch_interval() == pytest.approx(MAX_SWITCH_INTERVAL_S)
        sys.setswitchinterval(0.001)
        assert cap_switch_interval() == pytest.approx(0.001)  # smaller is left alone
    finally:
        sys.setswitchinterval(original)


def test_heartbeat_keeps_beating_while_two_threads_burn_cpu():
    worker_id = uuid7()
    heartbeat = Heartbeat(worker_id, 0.1, register=register_on(worker_id))
    register_on(worker_id)(heartbeat.db)
    burner = threading.Thread(target=burn, args=(2.0,))
    heartbeat.start()
    burner.start()
    try:
        burn(2.0)  # and this thread too: two pure-Python CPU hogs against one heartbeat
        burner.join()
        beats = heartbeat.beats
    finally:
        heartbeat.stop()
        heartbeat.join(5)
    # At most 20 fit in 2 s (each also waits for the GIL and a database round trip); a starved heartbeat
    # manages one or two. 12 was too tight: 11 was seen on a busy CI machine.
    assert beats >= 8, f"{beats} beats in 2 s at 0.1 s intervals"


def test_heartbeat_registers_again_when_declared_dead_and_notices_a_dead_supervisor():
    worker_id = uuid7()
    orphaned = threading.Event()
    heartbeat = Heartbeat(
        worker_id,
        0.1,
        register=register_on(worker_id),
        parent_pid=os.getppid() + 1_000_000,  # not our parent: as if the supervisor died and we were reparented
        on_orphaned=orphaned.set,
    )
    heartbeat.start()
    try:
        # no row at first (as after a rescue deleted it): the heartbeat finds it gone and registers again
        wait_until(lambda: Worker.objects.filter(id=worker_id).exists(), timeout=10, message="re-registration")
        assert orphaned.wait(5)
    finally:
        heartbeat.stop()
        heartbeat.join(5)


def test_completer_isolates_an_outcome_the_database_refuses(store):
    from djtasks.models import Job
    from djtasks.worker.completer import Completer
    from djtasks.worker.ledger import Ledger
    from tests.integration.test_store import job_row

    worker_id = uuid7()
    store.job_insert_many(now=timezone.now(), jobs=[job_row(), job_row()])
    good, bad = store.job_claim_many(now=timezone.now(), worker_id=worker_id, queues=["default"], limit=2)
    settled = []
    ledger = Ledger(4)
    completer = Completer(worker_id, ledger=ledger, on_done=settled.append)
    completer.start()
    try:
        now = timezone.now()
        ledger.claim([good, bad])
        for row, result in ((good, "3"), (bad, "{not json")):
            assert ledger.start(row["id"], now)
            ledger.finish(row["id"])
            completer.put(
                {"id": row["id"], "attempt": 1, "status": "succeeded", "result": result, "finished_at": now}
                | {"started_at": now, "error": None, "run_at": None}
            )
        assert completer.flush(10)
        assert ledger.outstanding == 0 and ledger.done == 2
    finally:
        completer.stop()
        completer.join(5)
    assert sum(settled) == 2 and completer.written == 2
    assert Job.objects.get(id=good["id"]).status == "succeeded"
    refused = Job.objects.get(id=bad["id"])
    assert refused.status == "failed" and "InvalidTextRepresentation" in refused.errors[-1]["type"]
