"""Odd and hostile input against the real database: refused before any SQL, and the caller's transaction
survives; what the database alone can refuse runs in a savepoint and comes back as ``EnqueueError``."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from djtasks import JobFailed
from djtasks.exceptions import EnqueueError, SerializationError
from djtasks.models import Job, Schedule
from tests.conftest import drain
from tests.integration.test_schedule_admin import errors_of, form
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    ("a\x00b",),  # NUL: common in scraped or binary-decoded text
    ("\ud800",),  # a lone surrogate
    ({"k\x00": 1},),  # NUL in a key
    ([[[["fine", "\udfff"]]]],),
    (float("nan"),),
    (10**5000,),
    ({1, 2},),
    (b"raw",),
]
IDS = ["nul", "surrogate", "nul-key", "surrogate-nested", "nan", "long-int", "set", "bytes"]


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def written(label: str) -> bool:
    return Execution.objects.filter(label=label).exists()


def caller_write(label: str) -> None:
    Execution.objects.create(job_id=uuid.uuid4(), label=label, attempt=1, pid=0)


@pytest.mark.parametrize("args", [*HOSTILE, (deep(3000),)], ids=[*IDS, "deep-3000"])
def test_refused_before_any_sql_and_the_callers_transaction_survives(args):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        caller_write("before")
        with pytest.raises(SerializationError, match=r"^tests\.testapp\.tasks\.echo\.delay: args\[0\]"):
            tasks.echo.delay(*args)
        caller_write("after")
    assert not [q for q in queries.captured_queries if "djtasks_job" in q["sql"]]
    assert written("before") and written("after") and not Job.objects.exists()


def test_bulk_delay_one_bad_row_refuses_the_batch_before_copy_and_the_transaction_survives():
    rows = [(f"row-{i}",) for i in range(500)]
    rows[321] = ("row\x00321",)
    with transaction.atomic():
        caller_write("before")
        with pytest.raises(SerializationError, match=r"echo\.bulk_delay: item 321: args\[0\] contains a NUL"):
            tasks.echo.bulk_delay(rows)
        caller_write("after")
    assert written("before") and written("after") and not Job.objects.exists()


def test_a_300_mb_argument_is_refused_at_the_call_by_the_default_limit():
    huge = "x" * (300 * 1024 * 1024)
    with pytest.raises(
        SerializationError, match=r"args\[0\] is a string of 314,572,800 characters, more than the 1,048"
    ):
        tasks.echo.delay(huge)  # refused before it is copied into JSON text
    with pytest.raises(SerializationError, match=r"the arguments take 1,048,600 bytes .*\(1,048,576\)"):
        tasks.echo.delay("z" * 524_288, k="z" * 524_300)  # each under the limit, not both
    del huge
    assert tasks.echo.delay("x" * (1024 * 1024 - 100)).id  # just under 1 MiB fits
    limited = override_settings(DJTASKS={"MAX_ARGS_BYTES": 100, "QUEUES": {"default": {}}})
    with limited, pytest.raises(SerializationError, match=r"kwargs take 111 bytes"):
        tasks.echo.delay(note="y" * 100)
    assert Job.objects.count() == 1


def test_a_duplicate_job_id_keeps_the_transaction_and_says_so():
    job_id = uuid.uuid4()
    tasks.echo.apply_async(("first",), job_id=job_id)
    with transaction.atomic():
        caller_write("before")
        with pytest.raises(EnqueueError, match=f"{job_id}|job_id exists already") as info:
            tasks.echo.apply_async(("second",), job_id=job_id)
        assert info.value.sqlstate == "23505"
        caller_write("after")
        kept = tasks.echo.delay("kept")
    assert written("before") and written("after")
    assert set(Job.objects.values_list("id", flat=True)) == {job_id, kept.id}


def test_bulk_delay_a_database_refusal_rolls_back_its_savepoint_only():
    taken = tasks.echo.delay("taken").id
    with transaction.atomic():
        caller_write("before")
        with pytest.raises(EnqueueError, match=r"echo\.bulk_delay: .*job_id exists already.*transaction is intact"):
            tasks.echo.bulk_delay([("a",), tasks.echo.s("b").set(job_id=taken), ("c",)])
        caller_write("after")
    assert written("before") and written("after") and list(Job.objects.values_list("id", flat=True)) == [taken]
    with pytest.raises(EnqueueError, match=r"nothing was enqueued$"):  # no transaction around it: its own
        tasks.echo.bulk_delay([("a",), tasks.echo.s("b").set(job_id=taken)])
    assert Job.objects.count() == 1


def test_signatures_refuse_at_creation_and_enqueue_what_they_hold():
    with transaction.atomic():
        caller_write("before")
        with pytest.raises(SerializationError, match=r"echo\.s: kwargs\['n'\]"):
            tasks.echo.s(n=float("inf"))
        result = tasks.echo.s(1, note="é😀").set(priority=3).delay()
        caller_write("after")
    assert written("before") and written("after")
    job = Job.objects.get(id=result.id)
    assert job.args == [1] and job.kwargs == {"note": "é😀"} and job.priority == 3


def test_schedule_arguments_are_checked_by_the_model_and_the_admin(client):
    schedule = Schedule(name="s", job_name="tests.testapp.tasks.tick", interval_seconds=10, kwargs={"x": "\x00"})
    with pytest.raises(ValidationError) as info:
        schedule.full_clean()
    assert "kwargs['x'] contains a NUL" in str(info.value.message_dict["kwargs"])
    with transaction.atomic():
        caller_write("before")
        with pytest.raises(ValidationError, match=r"schedule 's': kwargs\['x'\] contains a NUL"):
            schedule.save()  # validated as the admin form does, before any SQL
        caller_write("after")
    assert written("after") and not Schedule.objects.exists()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    page = errors_of(client.post(reverse("admin:djtasks_schedule_add"), form(args='["ok", "\\u0000"]')))
    assert "args[1] contains a NUL character" in page.replace("&#x27;", "'")
    page = errors_of(client.post(reverse("admin:djtasks_schedule_add"), form(kwargs='{"deep": 1e999}')))
    assert "kwargs[&#x27;deep&#x27;] is inf" in page
    with override_settings(DJTASKS={"MAX_ARGS_BYTES": 10, "QUEUES": {"default": {}}}):
        page = errors_of(client.post(reverse("admin:djtasks_schedule_add"), form(args='["just over ten"]')))
    assert "MAX_ARGS_BYTES" in page
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("kind", ["nul", "surrogate", "deep"])
def test_a_result_that_cannot_be_stored_fails_the_job_naming_the_problem(kind):
    bad = tasks.returns_unstorable.delay("bad", kind=kind)
    good = tasks.returns_unstorable.delay("good")
    assert drain() == 2
    with pytest.raises(JobFailed) as info:
        bad.get(timeout=1)
    assert info.value.exc_type == "djtasks.exceptions.SerializationError"
    expected = {
        "nul": r"result\['text'\]\[1\] contains a NUL character",
        "surrogate": "result contains a lone surrogate",
        "deep": "nested deeper than 100 levels",
    }[kind]
    assert __import__("re").search(expected, info.value.message), info.value.message
    assert bad.attempts == 1 and good.get(timeout=1) == "good"


def test_an_error_message_holding_nul_and_surrogates_is_recorded_visibly():
    result = tasks.raises_unstorable.delay()
    assert drain() == 1
    with pytest.raises(JobFailed) as info:
        result.get(timeout=1)
    assert info.value.message == "bad\\x00byte and \\udcff half"
    assert "bad\\x00byte" in info.value.traceback


@pytest.mark.parametrize(("kind", "message"), [("nan", "countdown must be a number"), ("far", "too far ahead")])
def test_ctx_retry_with_an_odd_countdown_fails_the_job_not_the_worker(kind, message):
    result = tasks.retries_oddly.delay(kind)
    assert drain() == 2  # the executor returned outcomes instead of raising: an error, then the retry
    assert result.get(timeout=1) == 2
    assert __import__("re").search(f"ctx.retry: .*{message}", result.errors[0]["message"])


def test_ctx_retry_takes_a_timedelta():
    result = tasks.retries_oddly.delay("timedelta")
    assert drain() == 2
    assert result.get(timeout=1) == 2


def test_the_django_tasks_backend_refuses_the_same_way_and_the_transaction_survives():
    pytest.importorskip("django.tasks", reason="django.tasks (and djtasks' backend for it) needs Django 6")
    from tests.testapp import django_tasks

    with transaction.atomic():
        caller_write("before")
        with pytest.raises(SerializationError, match=r"django_tasks\.echo\.enqueue: kwargs\['note'\] contains a NUL"):
            django_tasks.echo.enqueue(1, note="a\x00b")
        with pytest.raises(SerializationError, match=r"args\[0\]\[0\] contains a lone surrogate"):
            django_tasks.echo.enqueue(["\ud800"])
        caller_write("after")
    assert written("before") and written("after") and not Job.objects.exists()
