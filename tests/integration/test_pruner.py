from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from djtasks.maintenance import pruner
from djtasks.models import Job
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def make_finished(count: int, status: str, age: timedelta) -> None:
    results = tasks.add.bulk_delay([(1, 1)] * count)
    Job.objects.filter(id__in=[r.id for r in results]).update(status=status, finished_at=timezone.now() - age)


def test_job_prune_many_deletes_only_old_jobs_of_the_given_statuses(store):
    make_finished(5, "succeeded", timedelta(days=2))
    make_finished(3, "failed", timedelta(days=2))
    tasks.add.delay(1, 1)  # queued, never pruned
    deleted = store.job_prune_many(statuses=["succeeded"], before=timezone.now() - timedelta(days=1), limit=3)
    assert deleted == 3
    assert Job.objects.filter(status="succeeded").count() == 2
    assert Job.objects.filter(status="failed").count() == 3 and Job.objects.filter(status="queued").count() == 1


def test_run_once_applies_both_ttls_in_batches(store):
    make_finished(25, "succeeded", timedelta(hours=25))
    make_finished(4, "cancelled", timedelta(hours=25))
    make_finished(6, "succeeded", timedelta(hours=1))  # young: kept
    make_finished(7, "failed", timedelta(days=8))
    make_finished(2, "failed", timedelta(days=2))  # failed are kept 7 days
    result = pruner.run_once(timezone.now(), store, result_ttl=86400, failed_result_ttl=7 * 86400, batch=10)
    assert (result.succeeded, result.failed, result.complete) == (29, 7, True)
    assert Job.objects.filter(status="succeeded").count() == 6 and Job.objects.filter(status="failed").count() == 2


def test_run_once_stops_at_its_batch_budget(store):
    make_finished(30, "succeeded", timedelta(days=2))
    result = pruner.run_once(timezone.now(), store, result_ttl=86400, failed_result_ttl=86400, batch=10, max_batches=2)
    assert (result.deleted, result.complete) == (20, False)
    assert Job.objects.count() == 10


def test_prune_command_deletes_everything_past_the_ttls():
    from io import StringIO

    from django.core.management import call_command

    make_finished(2500, "succeeded", timedelta(days=2))
    make_finished(3, "failed", timedelta(days=8))
    make_finished(4, "failed", timedelta(days=2))
    out = StringIO()
    call_command("djtasks", "prune", stdout=out)
    assert out.getvalue().strip() == "deleted 2500 succeeded/cancelled and 3 failed job(s)"
    assert Job.objects.count() == 4


def test_pruner_service_runs_under_the_maintenance_runner():
    from djtasks.maintenance.pruner import Pruner
    from djtasks.maintenance.runner import MaintenanceRunner

    make_finished(5, "succeeded", timedelta(days=2))
    runner = MaintenanceRunner()
    try:
        result = runner.run_service(Pruner(runner.store))
    finally:
        runner.db.close()
    assert result.succeeded == 5 and not Job.objects.exists()


def test_under_the_runner_each_batch_holds_the_lock_and_the_run_stops_when_another_process_takes_it():
    import contextlib

    from djtasks.maintenance.runner import MaintenanceRunner
    from djtasks.worker.db import WorkerConnection

    make_finished(25, "succeeded", timedelta(days=2))
    runner = MaintenanceRunner()
    other = WorkerConnection()
    taken = contextlib.ExitStack()
    batches: list[bool] = []
    gate = runner.gate("pruner")

    @contextlib.contextmanager
    def watched_gate():
        if len(batches) == 2:  # another supervisor's pruner starts between this one's batches
            assert taken.enter_context(other.store.maintenance_locked(name="pruner"))
        with gate() as held:
            # the lock is held by this batch's own transaction, which is open
            assert runner.db.connection.info.transaction_status != 0
            batches.append(held)
            yield held

    try:
        with taken:
            result = pruner.run_once(timezone.now(), runner.store, result_ttl=86400, failed_result_ttl=86400, batch=10)
            assert result.succeeded == 25
            make_finished(25, "succeeded", timedelta(days=2))
            with pytest.raises(pruner.LockLost):
                pruner.run_once(
                    timezone.now(), runner.store, result_ttl=86400, failed_result_ttl=86400, batch=10, gate=watched_gate
                )
            assert batches == [True, True, False]
            assert Job.objects.count() == 5, "two batches of 10 were deleted before the other process took over"
            assert pruner.Pruner(runner.store).run_gated(timezone.now(), watched_gate) is None
        assert runner.run_service(pruner.Pruner(runner.store)).succeeded == 5  # the other one let go
    finally:
        runner.db.close()
        other.close()
