"""Cancelling: ``manage.py djtasks cancel``, ``cancel_jobs(terminate=...)`` and cooperative cancel in a job."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from djtasks import JobCancelled, JobResult
from djtasks.ids import uuid7
from djtasks.models import Job
from djtasks.operations import cancel_jobs
from djtasks.worker.executor import execute
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(*args):
    out = io.StringIO()
    call_command("djtasks", *args, stdout=out)
    return out.getvalue()


def claim_all(store, worker):
    return store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=100)


def test_command_cancels_a_queued_job_at_once():
    result = tasks.add.delay(1, 2)
    out = run_command("cancel", str(result.id))
    assert out == f"{result.id} cancelled\n"
    assert result.refresh().status == "cancelled"
    with pytest.raises(CommandError, match="no job was cancelled"):
        run_command("cancel", str(result.id))


def test_command_flags_running_jobs_with_or_without_terminate(store):
    polite, forceful = tasks.add.delay(1, 1), tasks.add.delay(2, 2)
    claim_all(store, uuid7())
    assert "asked to stop" in run_command("cancel", str(polite.id))
    assert "its worker process will be killed" in run_command("cancel", "--terminate", str(forceful.id))
    jobs = {j.id: j for j in Job.objects.all()}
    assert jobs[polite.id].cancel_requested and not jobs[polite.id].terminate_requested
    assert jobs[forceful.id].cancel_requested and jobs[forceful.id].terminate_requested
    assert {j.status for j in jobs.values()} == {"running"}


def test_command_rejects_a_bad_id_and_needs_a_subcommand():
    with pytest.raises(CommandError, match="not a job id"):
        run_command("cancel", "nope")
    with pytest.raises(CommandError):
        run_command()


def test_cancel_jobs_keeps_its_old_signature_and_job_result_cancel_takes_terminate(store):
    a, b = tasks.add.delay(1, 1), tasks.add.delay(2, 2)
    assert cancel_jobs([str(a.id)]) == {a.id: "cancelled"}
    claim_all(store, uuid7())
    assert b.cancel(terminate=True) is True
    assert Job.objects.get(id=b.id).terminate_requested


def test_running_job_stops_cooperatively_and_ends_cancelled(store):
    result = tasks.cooperative.delay(timeout=30)
    worker = uuid7()
    (row,) = claim_all(store, worker)
    box = {}
    thread = threading.Thread(target=lambda: box.update(outcome=execute(row)))
    thread.start()
    try:
        assert result.cancel() is True
        thread.join(10)
        assert not thread.is_alive()
    finally:
        thread.join()
    outcome = box["outcome"]
    assert outcome["status"] == "cancelled"
    assert store.job_finish_many(worker_id=worker, outcomes=[outcome]) == {result.id}
    with pytest.raises(JobCancelled, match="cancelled while running"):
        result.get(timeout=1)
    assert result.refresh().result == "stopped"


def test_is_cancelled_is_false_inline_and_for_a_job_nobody_cancelled(store):
    assert tasks.cooperative(timeout=0.01) == "timed out"  # inline: no row to read
    result = tasks.cooperative.delay(timeout=0.3)
    (row,) = claim_all(store, uuid7())
    assert execute(row)["status"] == "succeeded"
    # not recorded here; only its outcome was computed: the row is still this claim's, its start unrecorded
    assert JobResult(result.id).refresh().status == "queued"
    assert Job.objects.get(id=result.id).status == "running"
