"""Property tests over the public enqueue API with arbitrary JSON-like values (hypothesis).

For any arguments: either the job is stored and its arguments come back equal (tuples as lists, every type
kept: a float stays a float, a bool a bool), or ``SerializationError`` is raised and nothing is written. Which
of the two is decided by ``storable()`` below, written from the documented rules and independently of
djtasks' encoder, so a codec that refused too much (or too little) fails too. In both cases a write the
caller makes in the same ``atomic()`` block before and after the call is committed.

Settings: ``EXAMPLES`` examples per property (4 properties); ``derandomize`` under ``CI`` so a CI run is
repeatable (a failure found locally is printed with the example that reproduces it). Signatures are
enqueued by ``.delay()``, ``bulk_delay``, as the first step of a ``chain`` and as a member of a ``group``.
"""

from __future__ import annotations

import math
import os
import uuid
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from djtasks import chain, group, serialization
from djtasks.cursors import django_store
from djtasks.exceptions import SerializationError
from djtasks.models import Job
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLES = 200
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # each example commits to a real database on a shared machine
    derandomize=bool(os.environ.get("CI")),
    database=None if os.environ.get("CI") else settings.default.database,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the values ----------------------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # the whole range: NUL and lone surrogates included
SPECIAL = st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d\ude00", "😀", "é", "\uffff", "$djtasks", ""])
texts = st.one_of(
    st.text(ANY_CHARACTER, max_size=20),
    st.lists(st.one_of(SPECIAL, st.text(max_size=3)), max_size=4).map("".join),
    st.text(max_size=10),
)
huge_integers = st.builds(
    lambda digits, sign: sign * (10**digits - 1), st.integers(4290, 4310), st.sampled_from([1, -1])
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_integers,
    st.floats(),  # NaN, the infinities, -0.0, subnormals, 1e308 ...
    texts,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(texts, children, max_size=6),
    )


def _nest(value: Any, levels: int, as_dict: bool) -> Any:
    for _ in range(levels):
        value = {"k": value} if as_dict else [value]
    return value


nested = st.recursive(scalars, _containers, max_leaves=25)
deep = st.builds(_nest, nested, st.integers(90, 110), st.booleans())  # around MAX_DEPTH
wide = st.lists(st.one_of(st.integers(), st.text(max_size=4)), min_size=100, max_size=400)
values = st.one_of(nested, nested, deep, wide)
call_args = st.lists(values, max_size=4).map(tuple)
call_kwargs = st.dictionaries(texts, values, max_size=3)


# -- the oracle ----------------------------------------------------------------------------------------------


def _text_ok(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def storable(value: Any, depth: int = 0) -> bool:
    """Whether the documented rules accept ``value`` at nesting ``depth`` (0: an argument itself)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 10**serialization.MAX_INT_DIGITS
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _text_ok(value)
    if isinstance(value, (list, tuple)):
        return depth < serialization.MAX_DEPTH and all(storable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return (
            depth < serialization.MAX_DEPTH
            and serialization.TAG not in value
            and all(_text_ok(k) and storable(v, depth + 1) for k, v in value.items())
        )
    return False


def call_storable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return (
        all(storable(a) for a in args)
        and serialization.TAG not in kwargs
        and all(_text_ok(k) and storable(v) for k, v in kwargs.items())
    )


def assert_same(back: Any, sent: Any) -> None:
    """Equal, with tuples as lists, and of the same JSON type all the way down (``1.0`` is not ``1``)."""
    if isinstance(sent, tuple):
        sent = list(sent)
    assert type(back) is type(sent), (back, sent)
    if isinstance(sent, list):
        assert len(back) == len(sent)
        for b, s in zip(back, sent, strict=True):
            assert_same(b, s)
    elif isinstance(sent, dict):
        assert back.keys() == sent.keys()
        for key in sent:
            assert_same(back[key], sent[key])
    else:
        assert back == sent


# -- helpers -------------------------------------------------------------------------------------------------


def fresh() -> None:
    Job.objects.all().delete()
    Execution.objects.all().delete()


def caller_write(label: str) -> None:
    Execution.objects.create(job_id=uuid.uuid4(), label=label, attempt=1, pid=0)


def assert_caller_writes_committed() -> None:
    assert sorted(Execution.objects.values_list("label", flat=True)) == ["after", "before"]


def stored_arguments(job_id: uuid.UUID) -> tuple[Any, Any]:
    row = django_store().job_get(job_id)
    assert row is not None
    return serialization.loads(row["args"]), serialization.loads(row["kwargs"])


# -- the properties ------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(args=call_args, kwargs=call_kwargs, use_apply_async=st.booleans())
def test_delay_stores_exactly_or_refuses_and_the_transaction_survives(args, kwargs, use_apply_async):
    fresh()
    result = None
    with transaction.atomic():
        caller_write("before")
        try:
            if use_apply_async:
                result = tasks.echo.apply_async(args=args, kwargs=kwargs, priority=1)
            else:
                result = tasks.echo.delay(*args, **kwargs)
        except SerializationError:
            pass
        caller_write("after")
    assert_caller_writes_committed()
    if not call_storable(args, kwargs):
        assert result is None, "should have been refused"
        assert not Job.objects.exists()
        return
    assert result is not None, "should have been stored"
    back_args, back_kwargs = stored_arguments(result.id)
    assert_same(back_args, args)
    assert_same(back_kwargs, kwargs)


@PROPERTY_SETTINGS
@given(rows=st.lists(call_args, min_size=1, max_size=8))
def test_bulk_delay_stores_every_row_or_refuses_the_batch_naming_the_row(rows):
    fresh()
    results = None
    with transaction.atomic():
        caller_write("before")
        try:
            results = tasks.echo.bulk_delay(rows)
        except SerializationError as exc:
            refused = exc
        caller_write("after")
    assert_caller_writes_committed()
    bad = [i for i, row in enumerate(rows) if not call_storable(row, {})]
    if bad:
        assert results is None, "the batch should have been refused"
        assert f"item {bad[0]}:" in str(refused)  # the first bad row is named
        assert not Job.objects.exists()
        return
    assert results is not None and Job.objects.count() == len(rows)
    for result, row in zip(results, rows, strict=True):
        assert_same(stored_arguments(result.id)[0], row)


@PROPERTY_SETTINGS
@given(
    args=call_args,
    kwargs=call_kwargs,
    immutable=st.booleans(),
    via=st.sampled_from(["delay", "bulk_delay", "chain", "group"]),
)
def test_signatures_refuse_when_made_or_enqueue_exactly(args, kwargs, immutable, via):
    fresh()
    signature = None
    with transaction.atomic():
        caller_write("before")
        try:
            make = tasks.echo.si if immutable else tasks.echo.s
            signature = make(*args, **kwargs).set(priority=2)
        except SerializationError:
            pass
        if signature is not None:
            if via == "delay":
                signature.delay()
            elif via == "bulk_delay":
                tasks.echo.bulk_delay([signature])
            elif via == "chain":  # the signature is the first step; the next one is a plain job
                chain(signature, tasks.echo.si("next")).delay()
            else:
                group([signature, tasks.echo.si("other")]).delay()
        caller_write("after")
    assert_caller_writes_committed()
    if not call_storable(args, kwargs):
        assert signature is None, "the signature should have been refused when made"
        assert not Job.objects.exists()
        return
    back_args, back_kwargs = stored_arguments(Job.objects.get(priority=2).id)
    assert_same(back_args, args)
    assert_same(back_kwargs, kwargs)


@settings(PROPERTY_SETTINGS, max_examples=EXAMPLES)
@given(value=values)
def test_the_codec_round_trips_or_refuses_without_a_database(value):
    # The same oracle for the encoder alone (results go through it too), fast enough to try many more shapes.
    try:
        text = serialization.dumps(value, "result")
    except SerializationError:
        assert not storable(value)
        return
    assert storable(value)
    assert_same(serialization.loads(text), value)
