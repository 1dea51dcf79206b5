from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from djtasks import Job, job
from djtasks.exceptions import NotRegistered, SerializationError
from djtasks.jobs import backoff_seconds
from djtasks.registry import registry
from tests.testapp import tasks


def test_bare_and_configured_decorator_register_by_dotted_name():
    assert isinstance(tasks.add, Job)
    assert tasks.add.name == "tests.testapp.tasks.add"
    assert registry.get("tests.testapp.tasks.add") is tasks.add
    assert tasks.on_other.queue == "other" and tasks.on_other.priority == 5


def test_unknown_name_lookup():
    with pytest.raises(NotRegistered, match=r"no job named 'nope\.nope'"):
        registry.get("nope.nope")


def test_direct_call_runs_inline():
    assert tasks.add(2, 3) == 5
    assert tasks.asks_retry.func.__name__ == "asks_retry"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"priority": 101}, ImproperlyConfigured, "priority must be between"),
        ({"priority": -101}, ImproperlyConfigured, "priority must be between"),
        ({"priority": "high"}, TypeError, "priority must be an int"),
        ({"max_attempts": "3"}, TypeError, "max_attempts must be an int"),
        ({"retry_backoff_max": 0}, ImproperlyConfigured, "retry_backoff_max"),
        ({"time_limit": 0}, ImproperlyConfigured, "time_limit"),
        ({"time_limit": "long"}, TypeError, "time_limit"),
        ({"time_limit": 10, "soft_time_limit": 20}, ImproperlyConfigured, "soft_time_limit"),
        ({"name": 7}, TypeError, "name must be a string"),
        ({"max_attempts": 0}, ImproperlyConfigured, "max_attempts must be at least 1"),
        ({"retry_backoff": -1}, ImproperlyConfigured, "retry_backoff"),
        ({"retry_backoff": "fast"}, TypeError, "retry_backoff"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on"),
        ({"queue": ""}, TypeError, "queue"),
        ({"bind": "yes"}, TypeError, "bind"),
        ({"colour": "red"}, TypeError, "unknown option"),
    ],
)
def test_bad_options_raise_naming_job_and_option(options, error, message):
    with pytest.raises(error, match=message) as info:
        job(**{"name": "tests.bad", **options})(lambda: None)
    # DESIGN's promise: a bad @job option is ImproperlyConfigured or TypeError, never another kind.
    assert type(info.value) in (ImproperlyConfigured, TypeError)
    if "name" not in options:
        assert "tests.bad" in str(info.value)
    assert "tests.bad" not in registry


def test_bind_needs_a_context_parameter():
    with pytest.raises(TypeError, match="bind=True"):
        job(name="tests.bind_bad", bind=True)(lambda: None)


def test_name_clash_between_functions_is_an_error():
    def one():
        pass

    def two():
        pass

    job(name="tests.clash")(one)
    try:
        with pytest.raises(ImproperlyConfigured, match="already registered"):
            job(name="tests.clash")(two)
    finally:
        registry.unregister("tests.clash")


def test_backoff_is_exponential_with_bounded_jitter_and_cap():
    assert backoff_seconds(1, base=2, cap=600, rand=0) == 1
    assert backoff_seconds(1, base=2, cap=600, rand=1) == 2
    assert backoff_seconds(3, base=2, cap=600, rand=1) == 8
    assert backoff_seconds(3, base=2, cap=600, rand=0.5) == 6
    assert backoff_seconds(20, base=2, cap=600, rand=1) == 600


def test_retry_delay_zero_without_backoff():
    assert tasks.boom.retry_delay(1) == 0
    assert 0.5 <= tasks.flaky.retry_delay(1) <= 1


# Validation happens before any database access, so these need no database.
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"countdown": -1}, ValueError, "countdown must not be negative"),
        ({"countdown": "soon"}, TypeError, "countdown must be a number"),
        ({"eta": datetime(2030, 1, 1)}, ValueError, "naive datetime"),
        ({"eta": "tomorrow"}, TypeError, "eta must be a datetime"),
        ({"countdown": 1, "eta": datetime(2030, 1, 1)}, ValueError, "not both"),
        ({"expires": datetime(2030, 1, 1)}, ValueError, "naive datetime"),
        ({"expires": -5}, ValueError, "is not after the run time"),
        ({"countdown": 60, "expires": 30}, ValueError, "is not after the run time"),
        ({"queue": "nowhere"}, ValueError, "unknown queue 'nowhere'"),
        ({"priority": 500}, ValueError, "priority must be between"),
        ({"job_id": "not-a-uuid"}, ValueError, "job_id must be a UUID"),
    ],
)
def test_apply_async_rejects_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        tasks.add.apply_async(args=(1, 2), **kwargs)


def test_apply_async_rejects_unserializable_arguments():
    with pytest.raises(SerializationError, match=r"args\[0\]"):
        tasks.add.delay(object(), 1)


def test_bulk_delay_rejects_bad_items():
    with pytest.raises(TypeError, match="item 1 must be a tuple"):
        tasks.add.bulk_delay([(1, 2), 3])
    with pytest.raises(ValueError, match=r"signature of 'tests\.testapp\.tasks\.boom'"):
        tasks.add.bulk_delay([tasks.boom.s()])


def test_signature_carries_options():
    sig = tasks.add.s(1, 2).set(countdown=timedelta(seconds=5))
    assert sig.name == tasks.add.name and sig.args == (1, 2) and sig.options == {"countdown": timedelta(seconds=5)}
    assert tasks.add.si(1, 2).immutable
