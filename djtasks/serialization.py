"""JSON codec for job arguments and results. JSON only: never pickle.

Besides JSON's own types, datetimes, dates, times, timedeltas, Decimals and UUIDs round-trip as small tagged
objects (``{"$djtasks": "decimal", "v": "1.10"}``); tuples come back as lists. Anything else raises
``SerializationError`` naming the argument, at enqueue time, in the caller's process.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .exceptions import SerializationError

TAG = "$djtasks"

_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    dt.datetime: ("datetime", lambda v: v.isoformat()),
    dt.date: ("date", lambda v: v.isoformat()),
    dt.time: ("time", lambda v: v.isoformat()),
    dt.timedelta: ("timedelta", lambda v: [v.days, v.seconds, v.microseconds]),
    Decimal: ("decimal", str),
    uuid.UUID: ("uuid", str),
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
}


def _type_error(path: str, value: Any) -> SerializationError:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    hint = ""
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        hint = f"; pass its primary key instead ({path}=obj.pk) and load it inside the job"
    elif isinstance(value, (set, frozenset)):
        hint = "; pass a list instead"
    elif isinstance(value, bytes):
        hint = "; decode it to str (or base64) first"
    return SerializationError(f"{path} is not JSON-serializable: {name} {value!r:.80}{hint}")


def to_json_value(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON types, tagging the extra types; ``path`` names it in errors."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if TAG in value:
            raise SerializationError(f"{path} uses the reserved key {TAG!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; JSON object keys must be str"
                )
            out[key] = to_json_value(item, f"{path}[{key!r}]")
        return out
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        tag, encode = encoder
        return {TAG: tag, "v": encode(value)}
    raise _type_error(path, value)


def _decode_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    return _DECODERS[tag](obj["v"])


def dumps(value: Any, path: str = "value") -> str:
    """Serialize ``value`` to JSON text, raising ``SerializationError`` for what JSON cannot carry."""
    if not value and isinstance(value, (list, tuple, dict)):  # no arguments: the common case, made cheap
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(to_json_value(value, path), separators=(",", ":"))


def loads(text: str | None) -> Any:
    """Inverse of ``dumps``; ``None`` (SQL NULL) stays ``None``."""
    if text is None:
        return None
    if text == "[]":  # no arguments: the common case, made cheap
        return []
    if text == "{}":
        return {}
    return json.loads(text, object_hook=_decode_hook)


def dumps_args(args: Any, kwargs: Any) -> tuple[str, str]:
    """Serialize call arguments, naming the bad one (``args[1]``, ``kwargs['user']``) on failure."""
    if not isinstance(args, (list, tuple)):
        raise SerializationError(f"args must be a list or tuple, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise SerializationError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    return dumps(list(args), "args"), dumps(kwargs, "kwargs")
