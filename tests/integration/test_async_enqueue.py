"""``adelay`` / ``aapply_async`` from async code (an async view), and async jobs run in-process."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction

from djtasks import JobResult
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_adelay_enqueues_from_async_code():
    async def view():
        return await tasks.add.adelay(2, 3)

    result = async_to_sync(view)()
    assert isinstance(result, JobResult) and Job.objects.get(id=result.id).args == [2, 3]
    drain()
    assert result.get(timeout=5) == 5


def test_aapply_async_takes_the_options_of_apply_async():
    async def view():
        return await tasks.add.aapply_async((1, 1), queue="other", priority=9, countdown=3600)

    result = async_to_sync(view)()
    row = Job.objects.get(id=result.id)
    assert (row.queue, row.priority) == ("other", 9) and row.run_at > row.enqueued_at
    with pytest.raises(ValueError, match="unknown queue"):
        async_to_sync(tasks.add.aapply_async)((1, 1), queue="nowhere")


def test_adelay_joins_the_transaction_of_the_async_views_database_work():
    """An async view's ORM calls run on Django's thread-sensitive thread; so does adelay's INSERT, which
    therefore commits or rolls back with them."""

    def atomic_block(fail: bool):
        with transaction.atomic():
            result = async_to_sync(tasks.add.adelay)(1, 2)
            if fail:
                raise RuntimeError("roll back")
        return result

    async def view(fail: bool):
        return await sync_to_async(atomic_block, thread_sensitive=True)(fail)

    kept = async_to_sync(view)(False)
    with pytest.raises(RuntimeError):
        async_to_sync(view)(True)
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]


def test_async_jobs_run_in_process_with_retries_and_the_async_orm():
    result = tasks.arecord.delay("in-process", fail_until=1)  # max_attempts=3
    while drain():
        pass
    assert result.get(timeout=5) == 2 and result.attempts == 2
