"""djtasks through a real PgBouncer (Debian's ``pgbouncer``, started by the ``pgbouncers`` fixture): real
``runworker`` / ``runbeat`` subprocesses whose ``default`` alias goes through the pooler (``tests/settings_pgbouncer.py``),
jobs enqueued through it from another process, real SIGKILLs.

In transaction mode every statement may run on another server connection: nothing may rest on session state.
Workers there either poll or LISTEN on a direct connection of their own (``LISTEN_DATABASE``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from djtasks.cron import Timing, first_fire
from djtasks.models import Job, Schedule, Worker
from tests.acceptance.support import side_effects, statuses
from tests.conftest import ROOT, ManagedProcess, pooled_env, subprocess_env, wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]

WORKER_TIMEOUT_S = settings.DJTASKS["WORKER_TIMEOUT"]
RESCUE_INTERVAL_S = settings.DJTASKS.get("RESCUE_INTERVAL") or settings.DJTASKS["HEARTBEAT_INTERVAL"]
SLACK_S = 5.0  # process start-up and a busy shared machine
RESCUE_BOUND_S = WORKER_TIMEOUT_S + RESCUE_INTERVAL_S + SLACK_S
LONG_POLL_S = 30.0  # with this POLL_INTERVAL a job started within seconds was woken by LISTEN
WOKEN_WITHIN_S = 8.0

# Enqueues through the pooler, in another process: .delay() in transactions (one rolled back), bulk_delay, and
# jobs of a limited queue (whose claims lock its row in a transaction of three statements). Prints the ids.
ENQUEUE = """
import sys
import django
django.setup()
from django.db import transaction
from tests.testapp import tasks

path, count = sys.argv[1], int(sys.argv[2])
ids = []
with transaction.atomic():
    tasks.touch.delay(path)
    transaction.set_rollback(True)  # never committed: must never run
limited = count // 10
bulk = count // 5
singles = count - limited - bulk
for start in range(0, singles, 50):
    with transaction.atomic():
        ids += [tasks.touch.delay(path).id for _ in range(min(50, singles - start))]
ids += [r.id for r in tasks.touch.bulk_delay([(path,)] * bulk)]
ids += [tasks.touch.apply_async(args=(path,), queue="limited").id for _ in range(limited)]
print("\\n".join(str(i) for i in ids))
"""

# The admin's pages through the pooler, with Django's test client in a process whose default alias is pooled.
ADMIN = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from djtasks.models import Job, Schedule, Worker

setup_test_environment()
user = get_user_model().objects.create_superuser("pooled-admin", "a@example.com", "pw")
client = Client()
client.force_login(user)
job = Job.objects.order_by("enqueued_at").first()
pages = [
    reverse("admin:djtasks_job_changelist"),
    reverse("admin:djtasks_job_changelist") + "?status__exact=succeeded",
    reverse("admin:djtasks_job_change", args=[job.pk]),
    reverse("admin:djtasks_worker_changelist"),
    reverse("admin:djtasks_schedule_changelist"),
    reverse("admin:djtasks_schedule_add"),
    reverse("admin:djtasks_queuedashboard_changelist"),
    "/admin/",
]
for url in pages:
    print(client.get(url).status_code, url)
"""


def run_pooled(env: dict[str, str], script: str, *args: str) -> str:
    """Run ``script`` in a Python process with the pooled settings; returns what it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**subprocess_env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def report(text: str) -> None:
    sys.stderr.write(f"\n[measured] {text}\n")


@pytest.fixture
def transaction_pool(pgbouncers):
    return pgbouncers("transaction")


def test_500_jobs_enqueued_and_run_through_a_transaction_pooler_run_exactly_once(
    start_worker, transaction_pool, tmp_path
):
    listening = start_worker(
        "--processes", "2", "--threads", "4", env=pooled_env(transaction_pool, listen_database="direct")
    )
    polling = start_worker("--processes", "2", "--threads", "4", env=pooled_env(transaction_pool))
    wait_until(lambda: Worker.objects.count() == 4, timeout=90, message="four worker processes")
    path = tmp_path / "effects.log"

    started = time.monotonic()
    ids = run_pooled(pooled_env(transaction_pool), ENQUEUE, str(path), "500").split()
    assert len(ids) == 500
    wait_until(lambda: statuses()["succeeded"] >= 500, timeout=240, message="500 jobs to succeed")
    report(f"500 jobs through PgBouncer (transaction mode), two runworkers: {time.monotonic() - started:.1f} s")

    assert statuses() == Counter({"succeeded": 500}), "the rolled-back job does not exist; nothing failed"
    effects = side_effects(path)
    assert set(effects) == set(ids) and set(effects.values()) == {1}, "each job ran exactly once"
    assert Job.objects.filter(queue="limited").count() == 50
    assert "listening for new jobs on a direct connection of its own to 'direct'" in listening.log
    assert "where LISTEN cannot work, and no DJTASKS['LISTEN_DATABASE'] is set: polling" in polling.log
    assert "prepared statement" not in listening.log + polling.log
    assert "refused the start-up parameter" not in listening.log + polling.log  # POOL_MODE: none sent
    assert listening.stop() == 0 and polling.stop() == 0


def test_listen_database_wakes_workers_at_once_through_a_transaction_pooler(start_worker, transaction_pool):
    env = pooled_env(transaction_pool, listen_database="direct", poll_interval=LONG_POLL_S)
    worker = start_worker("--processes", "1", "--threads", "2", env=env)
    wait_until(lambda: Worker.objects.count() == 1, timeout=60, message="the worker process")
    time.sleep(2)  # its first claims are done: it sleeps for the long poll
    waits = []
    for value in (1, 2):
        enqueued = time.monotonic()
        result = tasks.add.delay(value, 1)
        assert result.get(timeout=WOKEN_WITHIN_S) == value + 1
        waits.append(time.monotonic() - enqueued)
    report(f"LISTEN_DATABASE behind a transaction pooler: jobs done {[f'{w:.2f}' for w in waits]} s after .delay()")
    assert worker.stop() == 0


def test_a_listen_database_that_goes_through_the_pooler_is_refused_and_the_worker_polls(start_worker, transaction_pool):
    worker = start_worker(
        "--processes", "1", "--threads", "2", env=pooled_env(transaction_pool, listen_database="default")
    )
    assert tasks.add.delay(2, 2).get(timeout=60) == 4, "the worker keeps working, polling"
    wait_until(lambda: "which can lose notifications: not listening" in worker.log, timeout=10, message="the warning")
    assert "djtasks.W022" in worker.log  # manage.py's system check said so first
    assert worker.stop() == 0


def test_a_listen_database_that_does_not_exist_stops_runworker_with_the_check_error(tmp_path, transaction_pool):
    env = pooled_env(transaction_pool, listen_database="nowhere")
    refused = ManagedProcess(tmp_path, "runworker", env=env)
    assert refused.wait(60) != 0
    assert "djtasks.E022" in refused.log and "DJTASKS['LISTEN_DATABASE'] is 'nowhere'" in refused.log
    refused.stop()
    # Past the checks (--skip-checks) the worker still works: it says so and polls.
    skipped = ManagedProcess(tmp_path, "runworker", "--skip-checks", "--processes", "1", env=env)
    try:
        assert tasks.add.delay(3, 3).get(timeout=60) == 6
        assert "DJTASKS['LISTEN_DATABASE'] is 'nowhere', which is not in DATABASES: polling" in skipped.log
    finally:
        assert skipped.stop() == 0


def test_sigkill_of_a_worker_process_mid_job_through_the_pooler_is_rescued(start_worker, transaction_pool):
    worker = start_worker("--processes", "2", "--threads", "2", env=pooled_env(transaction_pool))
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="two worker processes")
    victim_job = tasks.survive.delay("victim", sleep_first=60)
    others = tasks.survive.bulk_delay([(f"other-{i}", 0.05) for i in range(20)])
    wait_until(lambda: Execution.objects.filter(label="victim").exists(), timeout=30, message="the job to start")
    os.kill(Execution.objects.get(label="victim").pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(
        lambda: Execution.objects.filter(label="victim", attempt=2).exists(), timeout=60, message="the job to rerun"
    )
    delay = time.monotonic() - killed
    report(f"worker process SIGKILLed behind PgBouncer: its job ran again after {delay:.2f} s")
    assert delay <= RESCUE_BOUND_S
    assert victim_job.get(timeout=30) == "victim" and victim_job.attempts == 2
    assert victim_job.errors[0]["type"] == "djtasks.exceptions.WorkerLost"
    wait_until(lambda: statuses()["succeeded"] == 21, timeout=60, message="the others to succeed")
    assert {r.refresh().status for r in others} == {"succeeded"}
    assert worker.stop() == 0


@pytest.mark.slow
def test_sigkill_of_a_whole_runworker_is_rescued_by_another_through_the_pooler(start_worker, transaction_pool):
    """The issue's failure: behind a transaction pooler, a SIGKILLed runworker's 8 running jobs stayed running."""
    env = pooled_env(transaction_pool)
    doomed = start_worker("--processes", "2", "--threads", "4", env=env)
    survivor = start_worker("--processes", "1", "--threads", "8", env=env)
    wait_until(lambda: Worker.objects.count() == 3, timeout=90, message="both runworkers")
    time.sleep(3 * RESCUE_INTERVAL_S)  # both supervisors' maintenance has run through the pooler a few times
    # Fill the doomed runworker's 8 threads, then give the survivor's threads work of their own.
    doomed_ids = {w.id for w in Worker.objects.all() if w.concurrency == 4}
    orphans = tasks.survive.bulk_delay([(f"orphan-{i}", 60) for i in range(16)])
    wait_until(
        lambda: Job.objects.filter(status="running", worker_id__in=doomed_ids, started_at__isnull=False).count() == 8,
        timeout=60,
        message="8 jobs running on the doomed runworker",
    )
    held = set(Job.objects.filter(status="running", worker_id__in=doomed_ids).values_list("id", flat=True))
    os.killpg(doomed.proc.pid, signal.SIGKILL)  # supervisor and worker processes at once: nobody says goodbye
    killed = time.monotonic()
    wait_until(
        lambda: not Job.objects.filter(id__in=held, worker_id__in=doomed_ids).exists(),
        timeout=RESCUE_BOUND_S + 30,
        message="the dead runworker's jobs to be rescued",
    )
    delay = time.monotonic() - killed
    report(
        f"whole runworker SIGKILLed behind PgBouncer with {len(held)} job(s) held: rescued after {delay:.2f} s "
        f"(WORKER_TIMEOUT {WORKER_TIMEOUT_S} s, rescue interval {RESCUE_INTERVAL_S} s)"
    )
    assert delay <= RESCUE_BOUND_S
    assert "rescuer: 2 dead worker(s)" in survivor.log
    assert not Worker.objects.filter(id__in=doomed_ids).exists()
    wait_until(lambda: statuses()["succeeded"] == 16, timeout=180, message="every orphan to succeed on the survivor")
    assert all(r.refresh().get() == f"orphan-{i}" for i, r in enumerate(orphans))
    assert survivor.stop() == 0


def test_two_runbeats_through_the_pooler_enqueue_every_tick_exactly_once(tmp_path, transaction_pool):
    now = timezone.now()
    first = first_fire(Timing.make(every=1), now)
    Schedule.objects.create(
        name="pooled-every-second",
        job_name="tests.testapp.tasks.tick",
        interval_seconds=1,
        catch_up="all",
        kwargs={"label": "pooled"},
        next_fire_at=first,
        source="admin",
    )
    beats = [
        ManagedProcess(tmp_path, "runbeat", env=pooled_env(transaction_pool, listen_database="direct")),
        ManagedProcess(tmp_path, "runbeat", env=pooled_env(transaction_pool)),
    ]
    try:
        wait_until(lambda: all("beat: synced schedules" in b.log for b in beats), timeout=60, message="both beats")
        all_up = timezone.now()
        time.sleep(12)
        stop_at = timezone.now()
    finally:
        codes = [beat.stop() for beat in beats]
        for beat in beats:
            sys.stderr.write(f"--- {beat.log_path.name}\n{beat.log[-3000:]}\n")
    assert codes == [0, 0]
    per_tick = Counter(
        Job.objects.filter(name="tests.testapp.tasks.tick", kwargs__label="pooled").values_list("run_at", flat=True)
    )
    ticks = sorted(per_tick)
    assert max(per_tick.values()) == 1, [t for t, n in per_tick.items() if n > 1]
    assert ticks[0] == first and ticks == [first + i * timedelta(seconds=1) for i in range(len(ticks))]
    assert sum(all_up <= t <= stop_at for t in ticks) >= 10
    winners = [len(re.findall(r"beat: 'pooled-every-second' tick", beat.log)) for beat in beats]
    report(f"two runbeats behind PgBouncer: {len(ticks)} ticks, each once; fires won per scheduler {winners}")


def test_the_admin_pages_load_through_the_pooler(transaction_pool):
    tasks.add.delay(1, 2)
    Schedule.objects.create(name="s", job_name="tests.testapp.tasks.tick", interval_seconds=60, source="admin")
    lines = run_pooled(pooled_env(transaction_pool), ADMIN).splitlines()
    assert len(lines) == 8 and all(line.startswith("200 ") for line in lines), lines


def test_session_pooling_smoke_jobs_run_exactly_once_with_listen(start_worker, pgbouncers, tmp_path):
    session_pool = pgbouncers("session")
    env = pooled_env(session_pool, poll_interval=LONG_POLL_S)  # LISTEN on the pooled connection itself
    worker = start_worker("--processes", "2", "--threads", "4", env=env)
    wait_until(lambda: Worker.objects.count() == 2, timeout=60, message="two worker processes")
    time.sleep(2)
    enqueued = time.monotonic()
    assert tasks.add.delay(20, 22).get(timeout=WOKEN_WITHIN_S) == 42, "woken by LISTEN, not the 30 s poll"
    woken = time.monotonic() - enqueued
    path = tmp_path / "effects.log"
    ids = run_pooled(env, ENQUEUE, str(path), "100").split()
    wait_until(lambda: statuses()["succeeded"] >= 101, timeout=120, message="100 jobs to succeed")
    assert statuses() == Counter({"succeeded": 101})
    effects = side_effects(path)
    assert set(effects) == set(ids) and set(effects.values()) == {1}
    assert "listening for new jobs on 'default'" in worker.log
    report(f"session-mode PgBouncer: a job done {woken:.2f} s after .delay(); 100 more exactly once")
    assert worker.stop() == 0


def test_a_pooler_pool_mode_does_not_mention_is_noticed_at_start_up_and_the_worker_works(start_worker, pgbouncers):
    env = pooled_env(pgbouncers("session"), pool_mode="")
    worker = start_worker("--processes", "1", "--threads", "2", env=env)
    assert tasks.add.delay(5, 5).get(timeout=60) == 10
    wait_until(lambda: "DJTASKS['POOL_MODE'] is not set" in worker.log, timeout=10, message="the start-up warning")
    assert "goes through a connection pooler" in worker.log
    # The producer's start-up parameter (synchronous_commit=off) was refused: it connected without it.
    assert "the server refused the start-up parameter options" in worker.log
    assert worker.stop() == 0
