"""Conformance of ``djtasks.backend.DatabaseBackend`` with the ``django.tasks`` contract (Django 6+).

Written after Django's own ``tests/tasks`` suite (test_tasks.py, the backend tests) and django-tasks-db's
backend tests, against a real PostgreSQL; jobs are run in-process by ``drain()`` the way a worker runs them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

pytest.importorskip("django.tasks", reason="django.tasks (and djtasks' backend for it) needs Django 6")

from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from djtasks import JobResult
from djtasks.backend import DatabaseBackend, DjtasksTask
from djtasks.backend import task as djtasks_task
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import django_tasks as t
from tests.testapp import tasks as jobs
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

BACKEND = "djtasks.backend.DatabaseBackend"


def test_backend_declares_what_it_supports():
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task
    assert backend.task_class is DjtasksTask
    assert isinstance(t.add, DjtasksTask) and t.add.get_backend() is backend


# -- enqueue ----------------------------------------------------------------------------------------------
def test_enqueue_returns_a_ready_result_built_from_the_insert():
    result = t.add.enqueue(1, 2)
    assert result.status == TaskResultStatus.READY
    assert not result.is_finished
    assert result.task is t.add
    assert result.backend == "default"
    assert result.args == [1, 2] and result.kwargs == {}
    assert result.enqueued_at is not None and result.started_at is None and result.finished_at is None
    assert result.last_attempted_at is None and result.errors == [] and result.worker_ids == [] and result.attempts == 0
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    # The id is the djtasks job id: JobResult, the admin and manage.py djtasks find it.
    row = Job.objects.get(id=uuid.UUID(result.id))
    assert row.name == "tests.testapp.django_tasks.add" == t.add.module_path
    assert JobResult(result.id).status == "queued"
    assert row.enqueued_at == result.enqueued_at


def test_enqueue_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = t.add.enqueue(1, 2)
        assert Job.objects.filter(id=result.id).exists()  # visible inside the transaction
        raise RuntimeError("roll back")
    with pytest.raises(TaskResultDoesNotExist):
        t.add.get_result(result.id)


def test_enqueue_normalizes_arguments_as_django_does():
    result = t.echo.enqueue((1, 2), {"a": (3,)}, key=("x",))
    assert result.args == [[1, 2], {"a": [3]}] and result.kwargs == {"key": ["x"]}
    assert t.echo.get_result(result.id).args == [[1, 2], {"a": [3]}]


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), object(), {1, 2}, uuid.uuid4()])
def test_non_json_arguments_raise_type_error_and_nothing_is_enqueued(bad):
    with pytest.raises(TypeError):
        t.add.enqueue(bad, 1)
    with pytest.raises(TypeError):
        t.add.enqueue(1, b=bad)
    assert not Job.objects.exists()


def test_using_sets_priority_queue_and_run_after():
    later = timezone.now() + timedelta(hours=1)
    result = t.add.using(priority=-5, queue_name="other", run_after=later).enqueue(1, 1)
    row = Job.objects.get(id=result.id)
    assert (row.priority, row.queue, row.run_at) == (-5, "other", later)
    fetched = t.add.get_result(result.id)
    assert fetched.task.priority == -5 and fetched.task.queue_name == "other" and fetched.task.run_after == later
    assert drain() == 0  # not due yet
    assert t.echo.enqueue().task.priority == 7 and Job.objects.get(name=t.echo.module_path).queue == "other"


def test_invalid_task_options_raise_invalid_task():
    with pytest.raises(InvalidTask, match="aware"):
        t.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)
    with pytest.raises(InvalidTask, match="priority"):
        t.add.using(priority=101)
    with pytest.raises(InvalidTask, match="DJTASKS"):
        t.add.using(queue_name="nowhere").enqueue(1, 2)
    with pytest.raises(InvalidTask, match="max_attempts"):
        DjtasksTask(func=t.add.func, max_attempts=0)
    with pytest.raises(InvalidTask, match="soft_time_limit"):
        DjtasksTask(func=t.add.func, time_limit=1, soft_time_limit=5)
    assert not Job.objects.exists()


def test_queues_option_limits_the_queues_a_task_may_use():
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["default"]}}):
        t.add.enqueue(1, 2)
        with pytest.raises(InvalidTask, match="other"):
            t.add.using(queue_name="other").enqueue(1, 2)
        with pytest.raises(InvalidTask, match="other"):
            DjtasksTask(func=t.add.func, queue_name="other")
    assert Job.objects.count() == 1


def test_a_queue_in_tasks_but_not_in_djtasks_is_a_system_check_error():
    backend = DatabaseBackend("x", {"QUEUES": ["default", "emails"]})
    errors = backend.check()
    assert [e.id for e in errors] == ["djtasks.E008"] and "emails" in errors[0].msg


@task
def defined_outside_an_app():
    return None


def test_a_task_outside_installed_apps_cannot_be_enqueued():
    with pytest.raises(InvalidTask, match="not in an installed app"):
        defined_outside_an_app.enqueue()
    assert not Job.objects.exists()


def test_djtasks_backend_task_decorator_takes_djtasks_options():
    decorated = djtasks_task(max_attempts=4, retry_backoff=3, time_limit=timedelta(minutes=1))(t.add.func)
    assert isinstance(decorated, DjtasksTask) and decorated.max_attempts == 4
    job = task_backends["default"].job_for(decorated)
    assert job.max_attempts == 4 and job.time_limit == 60 and 1.5 <= job.retry_in(1) <= 3
    with pytest.raises(TypeError, match="unknown option"):
        djtasks_task(uniq=True)
    with pytest.raises(InvalidTask, match="unique_for"):
        task_backends["default"].job_for(djtasks_task(unique_for=-1)(t.add.func))


def test_a_unique_task_enqueued_twice_while_queued_is_one_job():
    first = t.refresh_feed.enqueue(7)
    again = t.refresh_feed.enqueue(7)
    other = t.refresh_feed.enqueue(8)
    assert again.id == first.id and other.id != first.id
    assert again.status == TaskResultStatus.READY and again.args == [7]
    assert Job.objects.filter(name=t.refresh_feed.module_path).count() == 2
    drain()
    assert t.refresh_feed.enqueue(7).id != first.id  # the first one finished: a new job


def test_djtasks_options_reach_the_row():
    result = t.limited.enqueue()
    row = Job.objects.get(id=result.id)
    assert (row.time_limit, row.soft_time_limit) == (30, 10)
    assert t.flaky.max_attempts == 3 and Job.objects.filter(max_attempts=1).count() == 1


def test_aenqueue_from_async_code():
    async def view():
        return await t.add.aenqueue(2, 3)

    result = async_to_sync(view)()
    assert result.status == TaskResultStatus.READY and Job.objects.filter(id=result.id).exists()


def test_aenqueue_joins_the_transaction_of_the_thread_it_came_from():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = async_to_sync(t.add.aenqueue)(1, 2)
        raise RuntimeError("roll back")
    assert not Job.objects.filter(id=result.id).exists()


# -- results ----------------------------------------------------------------------------------------------
def test_a_successful_task_result_has_every_field():
    result = t.add.enqueue(20, 22)
    drain()
    fetched = t.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.is_finished
    assert fetched.return_value == 42
    assert fetched.enqueued_at <= fetched.started_at <= fetched.finished_at
    assert fetched.last_attempted_at == fetched.started_at
    assert fetched.errors == [] and len(fetched.worker_ids) == 1 and fetched.attempts == 1
    row = Job.objects.get(id=result.id)
    assert fetched.worker_ids == [str(row.worker_id)]
    # refresh() fills the result enqueue returned
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    assert async_to_sync(t.add.aget_result)(result.id).return_value == 42
    assert default_task_backend.get_result(result.id).return_value == 42


def test_arefresh():
    result = t.add.enqueue(1, 1)
    drain()
    async_to_sync(result.arefresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2


def test_a_failed_task_result_carries_the_error():
    result = t.failing.enqueue("no luck")
    drain()
    fetched = t.failing.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED and fetched.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = fetched.return_value
    (error,) = fetched.errors
    assert isinstance(error, TaskError)
    assert error.exception_class_path == "builtins.ValueError" and error.exception_class is ValueError
    assert "no luck" in error.traceback and "Traceback" in error.traceback


def test_return_values_follow_djangos_json_rules():
    bad, good = t.returns_datetime.enqueue(), t.returns_tuple.enqueue()
    drain()
    bad_result = t.returns_datetime.get_result(bad.id)
    assert bad_result.status == TaskResultStatus.FAILED
    assert bad_result.errors[0].exception_class_path == "builtins.TypeError"
    assert t.returns_tuple.get_result(good.id).return_value == [1, [2, 3]]


def test_takes_context_gets_the_attempt_and_its_task_result():
    result = t.context_info.enqueue(label="ctx")
    drain()
    value = t.context_info.get_result(result.id).return_value
    row = Job.objects.get(id=result.id)
    assert value == {
        "attempt": 1,
        "id": result.id,
        "status": "RUNNING",
        "worker_ids": [str(row.worker_id)],
        "errors": 0,
        "label": "ctx",
    }


def test_retries_from_task_options_count_attempts_and_workers():
    result = t.flaky.enqueue(succeed_on=3)
    while drain():
        pass
    fetched = t.flaky.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.return_value == 3
    assert sorted(Execution.objects.filter(label="flaky-task").values_list("attempt", flat=True)) == [1, 2, 3]
    assert fetched.attempts == 3 and all(fetched.worker_ids)
    assert [e.exception_class_path for e in fetched.errors] == ["builtins.RuntimeError"] * 2


def test_cancelled_maps_to_failed():
    result = t.add.enqueue(1, 2)
    assert JobResult(result.id).cancel()
    fetched = t.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class_path == "djtasks.exceptions.JobCancelled"


def test_running_maps_to_running(store):
    result = t.add.enqueue(1, 2)
    worker = uuid.uuid4()
    (row,) = store.job_claim_many(now=timezone.now(), worker_id=worker, queues=["default"], limit=10)
    assert t.add.get_result(result.id).status == TaskResultStatus.READY  # claimed ahead, not started
    mark = {"id": row["id"], "attempt": row["attempt"], "started_at": timezone.now()}
    store.job_finish_many(worker_id=worker, outcomes=[], marks=[mark])  # its function started
    fetched = t.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.RUNNING and fetched.worker_ids == [str(worker)]
    assert fetched.started_at is not None and fetched.finished_at is None


def test_unknown_ids_raise_does_not_exist():
    for bad in (str(uuid.uuid4()), "not-a-uuid", ""):
        with pytest.raises(TaskResultDoesNotExist):
            t.add.get_result(bad)
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(bad)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(t.add.aget_result)(str(uuid.uuid4()))


def test_a_result_fetched_through_another_task_is_a_mismatch():
    result = t.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        t.failing.get_result(result.id)
    with pytest.raises(TaskResultMismatch):
        async_to_sync(t.failing.aget_result)(result.id)


def test_a_job_id_is_not_a_task_result():
    job = jobs.add.delay(1, 2)
    with pytest.raises(TaskResultDoesNotExist, match="@job"):
        default_task_backend.get_result(str(job.id))


# -- signals ----------------------------------------------------------------------------------------------
def test_signals_are_sent_with_the_backend_as_sender():
    seen = []

    def receiver(sender, task_result, signal, **kwargs):
        seen.append((signal, sender, task_result.status, task_result.id))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(receiver)
    try:
        ok, bad = t.add.enqueue(1, 2), t.failing.enqueue()
        drain()
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(receiver)
    assert all(sender is DatabaseBackend for _, sender, _, _ in seen)
    mine = {(s, status) for s, _, status, i in seen if i == ok.id}
    assert mine == {
        (task_enqueued, TaskResultStatus.READY),
        (task_started, TaskResultStatus.RUNNING),
        (task_finished, TaskResultStatus.SUCCESSFUL),
    }
    assert (task_finished, TaskResultStatus.FAILED) in {(s, status) for s, _, status, i in seen if i == bad.id}


def test_task_finished_is_not_sent_for_an_attempt_that_will_retry():
    finished = []

    def receiver(sender, task_result, **kwargs):
        finished.append(task_result.status)

    task_finished.connect(receiver)
    try:
        t.flaky.enqueue(succeed_on=2)
        while drain():
            pass
    finally:
        task_finished.disconnect(receiver)
    assert finished == [TaskResultStatus.SUCCESSFUL]


# -- async tasks, the worker's view ---------------------------------------------------------------------
def test_async_tasks_run_and_use_the_async_orm():
    a, b = t.aadd.enqueue(2, 3), t.arecord.enqueue("async-task")
    drain()
    assert t.aadd.get_result(a.id).return_value == 5
    assert t.arecord.get_result(b.id).return_value == 1


def test_an_unimportable_task_fails_its_job_with_what_to_fix_and_the_next_job_runs():
    gone, outside = t.add.enqueue(1, 2), t.add.enqueue(3, 4)
    Job.objects.filter(id=gone.id).update(name="tests.testapp.django_tasks.renamed_away")
    Job.objects.filter(id=outside.id).update(name="os.system")
    after = t.add.enqueue(5, 6)
    drain()
    errors = {row.id: row.errors[-1]["message"] for row in Job.objects.filter(status="failed")}
    assert "cannot be imported by the worker (ImportError" in errors[uuid.UUID(gone.id)]
    assert "not in an installed app" in errors[uuid.UUID(outside.id)]
    assert t.add.get_result(after.id).return_value == 11


def test_task_jobs_appear_in_the_admin_under_their_path(admin_client):
    t.add.enqueue(1, 2)
    page = admin_client.get(reverse("admin:djtasks_job_changelist"))
    assert page.status_code == 200 and b"tests.testapp.django_tasks.add" in page.content
