"""JSON codec for job arguments and results. JSON only: never pickle.

Besides JSON's own types, datetimes, dates, times, timedeltas, Decimals and UUIDs round-trip as small tagged
objects (``{"$djtasks": "decimal", "v": "1.10"}``); tuples come back as lists.

This is the one encoder every way into the job table uses (``delay``, ``apply_async``, ``bulk_delay``,
signatures, periodic schedules, results), and it refuses in Python, before any SQL is sent, everything
PostgreSQL's ``jsonb`` cannot hold, raising ``SerializationError`` that names the value's path
(``args[0]``, ``kwargs['note'][3]``) and says what to do:

- types JSON has no form for (sets, bytes, model instances, ...), and dict keys that are not strings;
- NaN and the infinities; integers of more than ``MAX_INT_DIGITS`` digits (Python's own limit for turning
  an int into text and back, which the worker would trip on);
- strings and keys holding a NUL character (``jsonb`` has no way to store ``\\u0000``) or a lone surrogate
  (not Unicode: half of a UTF-16 pair, or bytes smuggled in by ``errors="surrogateescape"``);
- nesting deeper than ``MAX_DEPTH`` lists and dicts (also what stops a list that contains itself);
- arguments larger than a limit the caller passes (``DJTASKS["MAX_ARGS_BYTES"]`` for jobs).

Floats of magnitude ``1e16`` and more are tagged too (``{"$djtasks": "float", "v": "1e+16"}``): ``jsonb``
stores numbers as ``numeric`` and would give ``1e16`` back as the integer ``10000000000000000``.

Refusing up front matters beyond a clearer message: a value PostgreSQL rejects makes the INSERT fail, and a
failed statement aborts the caller's whole transaction.
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
MAX_DEPTH = 100  # lists/dicts nested inside one argument (or one result); jsonb itself gives up past ~10,000
MAX_INT_DIGITS = 4300  # Python's default int <-> str limit (sys.get_int_max_str_digits()); the worker reads with it
FLOAT_TAG_MIN = 1e16  # from here on repr() writes a float without a decimal point ("1e+16"): jsonb makes it an int
PATH_SHOWN_LEVELS = 8  # a refused value nested deeper shows the first and last levels of its path only

DEFAULT_MAX_ARGS_BYTES = 1024 * 1024  # DJTASKS["MAX_ARGS_BYTES"]'s default: 1 MiB of JSON per job's arguments

_INT_BOUND = 10**MAX_INT_DIGITS
NO_LIMIT = 2**62

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
    "float": float,
}


class _Refused(Exception):
    """Raised inside the encoder; the path is collected while it unwinds (so a value that is fine never pays
    for building path strings), then it becomes a ``SerializationError``."""

    def __init__(self, message: Callable[[str], str]) -> None:
        super().__init__()
        self.message = message  # the path -> the text
        self.segments: list[str] = []  # innermost first

    def error(self, root: str, where: str | None) -> SerializationError:
        segments = self.segments[::-1]
        path = root + "".join(segments)
        if len(segments) > 2 * PATH_SHOWN_LEVELS:
            shown = "".join(segments[:PATH_SHOWN_LEVELS]) + "..." + "".join(segments[-PATH_SHOWN_LEVELS:])
            path = f"{root}{shown} ({len(segments)} levels down)"
        text = self.message(path)
        exc = SerializationError(f"{where}: {text}" if where else text)
        exc.path = root + "".join(segments)
        return exc


def _type_refusal(value: Any) -> _Refused:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return _Refused(
            lambda p: (
                f"{p} is not JSON-serializable: {name} {value!r:.80}; pass its primary key instead "
                f"({p}=obj.pk) and load it inside the job"
            )
        )
    hint = ""
    if isinstance(value, (set, frozenset)):
        hint = "; pass a list instead"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        hint = "; decode it to str (or base64) first"
    return _Refused(lambda p: f"{p} is not JSON-serializable: {name} {value!r:.80}{hint}")


def _text_refusal(text: str, what: str) -> _Refused | None:
    """Why PostgreSQL cannot store ``text`` (``what`` says where it sits, e.g. "" or " key 'a'"), or None."""
    index = text.find("\x00")
    if index >= 0:
        return _Refused(
            lambda p: (
                f"{p}{what} contains a NUL character (\\x00) at index {index}, which PostgreSQL cannot store; "
                "remove it (text.replace('\\x00', '')), or pass binary data base64-encoded"
            )
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            start = exc.start
            char = text[start]
            return _Refused(
                lambda p: (
                    f"{p}{what} contains a lone surrogate {char!r} at index {start}: not valid Unicode "
                    "(half of a UTF-16 pair, or undecodable bytes kept by errors='surrogateescape'), which PostgreSQL "
                    "cannot store; repair the text where it is decoded (e.g. errors='replace')"
                )
            )
    return None


def _encode(value: Any, depth: int, limit: int) -> Any:
    """``value`` as plain JSON types (extra types tagged); raises ``_Refused``. Exact types first: the
    common case costs a type lookup, not a chain of isinstance calls. A string longer than ``limit`` (bytes
    allowed in all) is refused before it is copied into the JSON text."""
    kind = type(value)
    if kind is str:
        if len(value) > limit:
            raise _Refused(
                lambda p: (
                    f"{p} is a string of {len(value):,} characters, more than the {limit:,} bytes allowed "
                    "(DJTASKS['MAX_ARGS_BYTES']); store large data elsewhere (a model row, a file) and pass its id "
                    "or path, or raise the limit"
                )
            )
        if "\x00" in value or not value.isascii():
            refused = _text_refusal(value, "")
            if refused is not None:
                raise refused
        return value
    if kind is int:
        if -_INT_BOUND < value < _INT_BOUND:
            return value
        raise _Refused(
            lambda p: (
                f"{p} is an integer of more than {MAX_INT_DIGITS} digits, more than Python reads back from "
                "JSON by default; pass it as a string (str(n)) and convert it in the job"
            )
        )
    if value is None or kind is bool:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Refused(lambda p: f"{p} is {value!r}, which JSON cannot represent; pass None or a string instead")
        if -FLOAT_TAG_MIN < value < FLOAT_TAG_MIN:
            return value
        return {TAG: "float", "v": repr(value)}
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise _too_deep()
        out = []
        for index, item in enumerate(value):
            try:
                out.append(_encode(item, depth + 1, limit))
            except _Refused as refused:
                refused.segments.append(f"[{index}]")
                raise
        return out
    if kind is dict:
        return _encode_dict(value, depth, limit)
    # Subclasses (IntEnum, StrEnum, OrderedDict, ...) and the tagged types.
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        tag, encode = encoder
        return {TAG: tag, "v": encode(value)}
    if isinstance(value, str):
        return _encode(str.__str__(value), depth, limit)  # the text itself, not what a subclass's __str__ says
    if isinstance(value, int):
        return _encode(int(value), depth, limit)
    if isinstance(value, float):
        return _encode(float(value), depth, limit)
    if isinstance(value, dict):
        return _encode_dict(value, depth, limit)
    if isinstance(value, (list, tuple)):  # namedtuples, list subclasses
        return _encode(list(value), depth, limit)
    raise _type_refusal(value)


def _encode_dict(value: dict[Any, Any], depth: int, limit: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise _too_deep()
    if TAG in value:
        raise _Refused(lambda p: f"{p} uses the reserved key {TAG!r}; rename it")
    out = {}
    for raw_key, item in value.items():
        key = raw_key
        if type(key) is not str:
            if not isinstance(key, str):
                raise _key_type_refusal(key)
            key = str.__str__(key)
        if "\x00" in key or not key.isascii():
            refused = _text_refusal(key, f" has a key {key!r:.60} that")
            if refused is not None:
                raise refused
        try:
            out[key] = _encode(item, depth + 1, limit)
        except _Refused as refused:
            refused.segments.append(f"[{key!r}]")
            raise
    return out


def _key_type_refusal(key: Any) -> _Refused:
    return _Refused(
        lambda p: (
            f"{p} has a key {key!r:.60} of type {type(key).__name__}; JSON object keys must be str (convert "
            "them, e.g. {str(k): v for k, v in d.items()})"
        )
    )


def _too_deep() -> _Refused:
    return _Refused(
        lambda p: (
            f"{p} is nested deeper than {MAX_DEPTH} levels of lists and dicts (the limit for job arguments "
            "and results; or a list or dict that contains itself); flatten it, or store the data elsewhere and pass "
            "its id"
        )
    )


def to_json_value(value: Any, path: str = "value") -> Any:
    """Return ``value`` as plain JSON types, tagging the extra types; ``path`` names it in errors."""
    try:
        return _encode(value, 0, NO_LIMIT)
    except _Refused as refused:
        raise refused.error(path, None) from None
    except RecursionError:  # the caller's own stack was already nearly full
        raise SerializationError(f"{path} is nested too deeply to serialize") from None


def _decode_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    return _DECODERS[tag](obj["v"])


def _text(value: Any) -> str:
    # ensure_ascii=False: the text's length in characters bounds its UTF-8 size cheaply (see _check_size).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any, path: str = "value", *, max_bytes: int | None = None, where: str | None = None) -> str:
    """Serialize ``value`` to JSON text, raising ``SerializationError`` (see the module doc) for what the
    database cannot hold; ``path`` names the value in the message, ``where`` (e.g. the call) prefixes it,
    and ``max_bytes`` bounds the text's UTF-8 size."""
    return _dumps(value, path, max_bytes, where, 0)


def _dumps(value: Any, path: str, max_bytes: int | None, where: str | None, depth: int) -> str:
    if not value and isinstance(value, (list, tuple, dict)):  # no arguments: the common case, made cheap
        return "{}" if isinstance(value, dict) else "[]"
    if value is None:  # a job that returns nothing: the most common result
        return "null"
    try:
        text = _text(_encode(value, depth, NO_LIMIT if max_bytes is None else max_bytes))
    except _Refused as refused:
        raise refused.error(path, where) from None
    except RecursionError:
        raise SerializationError(f"{where + ': ' if where else ''}{path} is nested too deeply to serialize") from None
    if max_bytes is not None:
        _check_size(len(text), text, max_bytes, path, where)
    return text


def loads(text: str | None) -> Any:
    """Inverse of ``dumps``; ``None`` (SQL NULL) stays ``None``."""
    if text is None:
        return None
    if text == "[]":  # no arguments: the common case, made cheap
        return []
    if text == "{}":
        return {}
    return json.loads(text, object_hook=_decode_hook)


def dumps_args(
    args: Any, kwargs: Any, *, max_bytes: int | None = DEFAULT_MAX_ARGS_BYTES, where: str | None = None
) -> tuple[str, str]:
    """Serialize call arguments, naming the bad one (``args[1]``, ``kwargs['user']``) on failure.

    ``max_bytes`` bounds the UTF-8 size of both JSON texts together: pass ``DJTASKS["MAX_ARGS_BYTES"]``
    (a new enqueue path that forgets gets its default, not no limit; ``None`` means no limit);
    ``where`` prefixes every message (e.g. ``"app.tasks.send.delay"``).
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(args, (list, tuple)):
        raise SerializationError(f"{prefix}args must be a list or tuple, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise SerializationError(f"{prefix}kwargs must be a dict, got {type(kwargs).__name__}")
    # Depth -1: the args list and the kwargs dict are not levels of any argument's own nesting.
    args_json = _dumps(args, "args", max_bytes, where, -1) if args else "[]"
    kwargs_json = _dumps(kwargs, "kwargs", max_bytes, where, -1) if kwargs else "{}"
    if max_bytes is not None:
        chars = len(args_json) + len(kwargs_json)
        if chars * 4 > max_bytes:  # a character takes at most 4 bytes in UTF-8: only big ones are measured
            _check_size(chars, args_json + kwargs_json, max_bytes, "the arguments", where)
    return args_json, kwargs_json


def _check_size(chars: int, text: str, max_bytes: int, what: str, where: str | None) -> None:
    if chars * 4 <= max_bytes:
        return
    size = chars if text.isascii() else len(text.encode("utf-8"))
    if size > max_bytes:
        prefix = f"{where}: " if where else ""
        raise SerializationError(
            f"{prefix}{what} take {size:,} bytes as JSON, more than DJTASKS['MAX_ARGS_BYTES'] ({max_bytes:,}); "
            "store large data elsewhere (a model row, a file) and pass its id or path, or raise the limit"
        )


def storable_text(text: str) -> str:
    """``text`` with what PostgreSQL cannot store written out visibly instead (a NUL as ``\\x00``, a lone
    surrogate as ``\\udc80``): for texts djtasks records itself, such as a failed job's error message and
    traceback, which must be stored whatever they contain."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_text(value: Any, what: str, *, max_chars: int | None = None) -> str:
    """Return ``value`` if it is a string PostgreSQL can store in a text column of ``max_chars`` characters;
    else raise ``ValueError`` (``TypeError`` if it is not a string) naming ``what``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{what} {value!r:.60} contains a NUL character (\\x00), which PostgreSQL cannot store")
    if not value.isascii() and _text_refusal(value, "") is not None:
        raise ValueError(
            f"{what} {value!r:.60} contains a lone surrogate: not valid Unicode, PostgreSQL cannot store it"
        )
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"{what} is {len(value)} characters long; the column holds at most {max_chars}")
    return value
