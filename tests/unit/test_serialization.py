import datetime as dt
import uuid
from decimal import Decimal

import pytest

from djtasks import serialization
from djtasks.exceptions import SerializationError


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -5,
        1.5,
        "text",
        [1, "a", None],
        {"k": [1, {"n": 2}]},
        dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 2, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2026, 1, 2),
        dt.time(12, 30, 1),
        dt.timedelta(days=2, seconds=5, microseconds=7),
        Decimal("1.10"),
        Decimal("-0.000001"),
        uuid.UUID("01a1fde2-42e0-7940-b28b-7c5d456ad7eb"),
        {"when": dt.date(2020, 2, 29), "amounts": [Decimal("3.14")]},
    ],
)
def test_round_trip(value):
    assert serialization.loads(serialization.dumps(value)) == value


def test_tuples_become_lists():
    assert serialization.loads(serialization.dumps((1, (2, 3)))) == [1, [2, 3]]


def test_decimal_keeps_its_exponent():
    assert str(serialization.loads(serialization.dumps(Decimal("1.10")))) == "1.10"


def test_error_names_the_argument_and_type():
    class Thing:
        pass

    with pytest.raises(SerializationError, match=r"args\[1\] is not JSON-serializable: .*Thing"):
        serialization.dumps_args((1, Thing()), {})
    with pytest.raises(SerializationError, match=r"kwargs\['tags'\] is not JSON-serializable: set.*pass a list"):
        serialization.dumps_args((), {"tags": {1, 2}})
    with pytest.raises(SerializationError, match=r"kwargs\['deep'\]\['x'\]\[0\]"):
        serialization.dumps_args((), {"deep": {"x": [b"raw"]}})


def test_serialization_error_is_a_type_error():
    assert issubclass(SerializationError, TypeError)


def test_model_instance_hint_says_pass_the_primary_key():
    from django.contrib.auth.models import User

    with pytest.raises(SerializationError, match=r"pass its primary key instead \(kwargs\['user'\]=obj.pk\)"):
        serialization.dumps_args((), {"user": User(pk=1, username="u")})


def test_non_string_keys_and_non_finite_floats_are_rejected():
    with pytest.raises(SerializationError, match="keys must be str"):
        serialization.dumps({1: "a"})
    with pytest.raises(SerializationError, match="nan"):
        serialization.dumps(float("nan"))


def test_reserved_key_is_rejected():
    with pytest.raises(SerializationError, match="reserved key"):
        serialization.dumps({"$djtasks": "x"})
