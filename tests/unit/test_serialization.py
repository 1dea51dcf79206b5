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


# -- what jsonb cannot hold: refused in Python, naming the path and what to do ----------------------------


def test_nul_in_a_string_or_a_key_is_refused_naming_the_path():
    with pytest.raises(
        SerializationError, match=r"^args\[0\] contains a NUL character .* at index 1.*remove it"
    ) as info:
        serialization.dumps_args(("a\x00b",), {})
    assert info.value.path == "args[0]"
    with pytest.raises(SerializationError, match=r"kwargs\['note'\]\[3\] contains a NUL") as info:
        serialization.dumps_args((), {"note": ["a", "b", "c", "\x00"]})
    assert info.value.path == "kwargs['note'][3]"
    with pytest.raises(SerializationError, match=r"kwargs\['d'\] has a key 'k\\x00' that contains a NUL"):
        serialization.dumps_args((), {"d": {"k\x00": 1}})
    with pytest.raises(SerializationError, match=r"kwargs has a key 'a\\x00' that contains a NUL"):
        serialization.dumps_args((), {"a\x00": 1})


def test_lone_surrogates_are_refused_but_pairs_of_real_characters_are_fine():
    with pytest.raises(SerializationError, match=r"args\[0\] contains a lone surrogate '\\ud800' at index 2"):
        serialization.dumps_args(("ab\ud800",), {})
    with pytest.raises(SerializationError, match=r"args\[0\]\[0\] has a key '\\udcff' that contains a lone"):
        serialization.dumps_args(([{"\udcff": 1}],), {})
    assert serialization.loads(serialization.dumps("😀 é \uffff")) == "😀 é \uffff"


def test_deep_nesting_is_refused_not_a_recursion_error():
    value: list = []
    for _ in range(3000):
        value = [value]
    with pytest.raises(SerializationError, match=r"args\[0\]\[0\].*\.\.\..*levels down\) is nested deeper than 100"):
        serialization.dumps_args((value,), {})
    at_limit: object = "x"
    for _ in range(serialization.MAX_DEPTH):
        at_limit = {"k": at_limit}
    assert serialization.loads(serialization.dumps(at_limit)) == at_limit
    with pytest.raises(SerializationError, match="nested deeper"):
        serialization.dumps([at_limit])


def test_a_list_that_contains_itself_is_refused():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="contains itself"):
        serialization.dumps(loop)


def test_integers_too_long_to_read_back_are_refused():
    limit = 10**serialization.MAX_INT_DIGITS
    assert serialization.loads(serialization.dumps([limit - 1, -(limit - 1)])) == [limit - 1, -(limit - 1)]
    with pytest.raises(SerializationError, match=r"args\[1\] is an integer of more than 4300 digits.*str\(n\)"):
        serialization.dumps_args((1, limit), {})
    with pytest.raises(SerializationError, match=r"is -inf, which JSON cannot represent"):
        serialization.dumps(float("-inf"))


@pytest.mark.parametrize("value", [1e16, -1e16, 1e23, 1.7976931348623157e308, 123456789012345680.0])
def test_large_floats_come_back_as_the_same_float(value):
    # jsonb would turn 1e+16 into the integer 10000000000000000 (and 1e23 into a different number).
    text = serialization.dumps([value])
    assert '"$djtasks":"float"' in text
    back = serialization.loads(text)[0]
    assert type(back) is float and back == value


def test_size_limit_counts_utf8_bytes_of_both_args_and_kwargs():
    # ["a...a"] is 54 bytes, {"k":"b...b"} 8 more than its b's
    assert serialization.dumps_args(("a" * 50,), {"k": "b" * 38}, max_bytes=100)
    with pytest.raises(SerializationError, match=r"f: the arguments take 101 bytes as JSON.*MAX_ARGS_BYTES'\] \(100\)"):
        serialization.dumps_args(("a" * 50,), {"k": "b" * 39}, max_bytes=100, where="f")
    # "é" is one character and two bytes in UTF-8
    with pytest.raises(SerializationError, match="args take 104 bytes"):
        serialization.dumps_args(("é" * 50,), {}, max_bytes=100)


def test_subclasses_of_json_types_are_stored_as_their_base_type():
    import enum
    from collections import OrderedDict, namedtuple

    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        def __str__(self) -> str:
            return "not this"

    Point = namedtuple("Point", "x y")
    text = serialization.dumps([Colour.RED, Name("ann"), Point(1, 2), OrderedDict(a=1)])
    assert serialization.loads(text) == [1, "ann", [1, 2], {"a": 1}]


def test_storable_text_makes_nul_and_lone_surrogates_visible():
    assert serialization.storable_text("a\x00b\ud800é😀") == "a\\x00b\\ud800é😀"
    assert serialization.storable_text("plain") == "plain"


def test_check_text_for_names():
    assert serialization.check_text("emails", "queue") == "emails"
    with pytest.raises(ValueError, match="queue 'a\\\\x00' contains a NUL"):
        serialization.check_text("a\x00", "queue")
    with pytest.raises(ValueError, match="lone surrogate"):
        serialization.check_text("\udc80", "queue")
    with pytest.raises(ValueError, match="101 characters long; the column holds at most 100"):
        serialization.check_text("q" * 101, "queue", max_chars=100)
    with pytest.raises(TypeError):
        serialization.check_text(5, "queue")
