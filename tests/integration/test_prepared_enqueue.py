"""``.delay()`` runs its INSERT as a prepared statement on the caller's Django connection, and nothing else
about that connection changes: the site's own queries stay unprepared, Django still sees and wraps the
statement, errors are Django's, and a rollback or a new connection costs nothing but a fresh PREPARE."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from djtasks.exceptions import EnqueueError
from djtasks.models import Job
from djtasks.store import queries
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

INSERT_START = "WITH inserted AS (\n    INSERT INTO djtasks_job"


def djtasks_settings(**overrides):
    return override_settings(DJTASKS={**settings.DJTASKS, **overrides})


def prepared_statements() -> list[str]:
    """The statements prepared in this session (Django's connection), as the server lists them."""
    with connection.cursor() as cur:
        cur.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cur.fetchall()]


def prepared_inserts() -> int:
    return sum(1 for sql in prepared_statements() if sql.startswith(INSERT_START))


@pytest.fixture(autouse=True)
def fresh_connection():
    """Each test starts on a new session, so what is prepared is what the test did."""
    connection.close()
    yield
    connection.close()


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_delay_prepares_its_insert_once_per_connection():
    assert prepared_inserts() == 0
    for n in range(5):
        tasks.add.delay(n, n)
    assert prepared_inserts() == 1
    assert Job.objects.count() == 5
    assert connection.connection.prepare_threshold is None  # Django's setting is as it was


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_the_sites_own_queries_stay_unprepared():
    tasks.add.delay(1, 1)
    for _ in range(10):
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM djtasks_job WHERE queue = %s", ["default"])
        list(Job.objects.filter(queue="default"))
    assert [sql for sql in prepared_statements() if not sql.startswith(INSERT_START)] == []


@djtasks_settings(PREPARED_STATEMENTS=False)
def test_prepared_statements_off_prepares_nothing():
    for n in range(3):
        tasks.add.delay(n, n)
    assert prepared_inserts() == 0 and Job.objects.count() == 3


@djtasks_settings(LISTEN=False)
def test_prepared_statements_follow_listen_by_default():
    tasks.add.delay(1, 1)
    assert prepared_inserts() == 0 and Job.objects.count() == 1


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_rollback_then_enqueue_again():
    """psycopg forgets (DEALLOCATE ALL) what it prepared when a transaction rolls back; the next enqueue
    prepares again."""
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.delay(1, 1)
        raise RuntimeError("abort")
    ok = tasks.add.delay(2, 2)
    with transaction.atomic():
        inside = tasks.add.delay(3, 3)
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            tasks.add.delay(4, 4)
            raise RuntimeError("abort inner")
        after = tasks.add.delay(5, 5)
    assert set(Job.objects.values_list("id", flat=True)) == {ok.id, inside.id, after.id}
    assert prepared_inserts() == 1


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_database_errors_are_djangos_and_leave_the_transaction_usable():
    job_id = uuid.uuid4()
    tasks.add.apply_async((1, 1), job_id=job_id)
    with pytest.raises(EnqueueError) as info:  # autocommit: no transaction to keep
        tasks.add.apply_async((1, 1), job_id=job_id)
    assert isinstance(info.value.__cause__, IntegrityError)  # Django's class, from the prepared statement
    with transaction.atomic():
        with pytest.raises(EnqueueError, match=r"job_id exists already.*transaction is intact"):
            tasks.add.apply_async((1, 1), job_id=job_id)  # in a savepoint of its own
        kept = tasks.add.delay(2, 2)
    with transaction.atomic(), transaction.atomic(savepoint=False):
        with pytest.raises(EnqueueError):
            tasks.add.apply_async((1, 1), job_id=job_id)
        also_kept = tasks.add.delay(3, 3)
    assert set(Job.objects.values_list("id", flat=True)) == {job_id, kept.id, also_kept.id}


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_a_closed_connection_is_reopened_and_prepared_again():
    tasks.add.delay(1, 1)
    connection.close()
    tasks.add.delay(2, 2)
    assert prepared_inserts() == 1 and Job.objects.count() == 2


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_query_logging_and_execute_wrappers_see_the_insert():
    with CaptureQueriesContext(connection) as captured:  # as DEBUG and assertNumQueries do
        tasks.add.delay(1, 1)
    assert [q["sql"] for q in captured.captured_queries if "INSERT INTO djtasks_job" in (q["sql"] or "")]
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        tasks.add.delay(2, 2)
    assert seen == [queries()["job_insert"]]
    assert prepared_inserts() == 1 and Job.objects.count() == 2  # prepared by the wrapped call


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_threads_enqueue_on_their_own_connections():
    """Each thread has its own Django connection, so its own prepared statement and kept cursor."""
    errors = []

    def enqueue(worker: int) -> None:
        try:
            for n in range(30):
                tasks.add.delay(worker, n)
            assert prepared_inserts() == 1
        except BaseException as exc:  # reported below: an assertion in a thread would be lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Job.objects.count() == 120


@djtasks_settings(PREPARED_STATEMENTS=True)
def test_delay_from_async_code_is_refused_as_any_query_is():
    async def view():
        tasks.add.delay(1, 1)

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(view())
    assert Job.objects.count() == 0
