"""The ``DJTASKS`` setting as one typed object, read lazily.

Nothing here reads settings at import time: ``djtasks_settings.X`` parses ``settings.DJTASKS`` on first use
and again after ``override_settings`` changes it. ``parse()`` is also what the system checks call, so a bad
setting is reported with the same words by ``manage.py check`` and at run time.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from . import durations
from .flow import Limits, RateLimit, parse_rate
from .inputs import QUEUE_MAX_CHARS
from .priority import PRIORITY_MAX, PRIORITY_MIN
from .schedules import ScheduleDef, parse_settings
from .serialization import DEFAULT_MAX_ARGS_BYTES, check_text

__all__ = [
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "DjtasksSettings",
    "QueueConfig",
    "SettingError",
    "djtasks_settings",
    "parse",
]

MAX_ARGS_BYTES_DEFAULT = DEFAULT_MAX_ARGS_BYTES  # 1 MiB of JSON per job's arguments
JSONB_MAX_BYTES = 268_435_455  # the most one jsonb value can hold (255 MiB)

QUEUE_OPTIONS = {"concurrency", "rate_limit", "paused"}
POOL_MODES = ("session", "transaction")  # what DJTASKS['POOL_MODE'] may name (None: no pooler, or not said)
GLOB_CHARS = frozenset("*?[")
ROUTE_CACHE_MAX = 10_000  # job names whose route is remembered (enqueue by name may bring any number)


@dataclass(frozen=True)
class QueueConfig:
    """A queue's options as ``DJTASKS['QUEUES']`` gives them: the defaults of its ``djtasks_queue`` row."""

    name: str
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    paused: bool = False

    @property
    def limits(self) -> Limits:
        return Limits(self.concurrency, self.rate_limit, self.paused)


@dataclass(frozen=True)
class DjtasksSettings:
    DATABASE: str = "default"
    QUEUES: dict[str, QueueConfig] = field(default_factory=lambda: {"default": QueueConfig("default")})
    DEFAULT_QUEUE: str = "default"
    HEARTBEAT_INTERVAL: float = 5.0
    WORKER_TIMEOUT: float = 30.0
    RESCUE_INTERVAL: float | None = None
    POLL_INTERVAL: float = 1.0
    LISTEN: bool = True
    LISTEN_DATABASE: str | None = None
    POOL_MODE: str | None = None
    PREPARED_STATEMENTS: bool | None = None
    RESULT_TTL: float = 86400.0
    FAILED_RESULT_TTL: float = 7 * 86400.0
    BEAT_SCHEDULE: dict[str, ScheduleDef] = field(default_factory=dict)
    MAX_ARGS_BYTES: int = MAX_ARGS_BYTES_DEFAULT
    ROUTES: dict[str, str] = field(default_factory=dict)

    def route(self, job_name: str) -> str | None:
        """The queue ``ROUTES`` sends ``job_name`` to, or ``None``: an exact name wins over patterns, and of
        the glob patterns (``fnmatch``, case-sensitive) the first that matches, in the order written."""
        if not self.ROUTES:
            return None
        cache: dict[str, str | None] | None = self.__dict__.get("_routes_cache")
        if cache is None:  # made on first use; not a field, so equality and the declared settings ignore it
            cache = {}
            object.__setattr__(self, "_routes_cache", cache)
        if job_name in cache:
            return cache[job_name]
        found = self.ROUTES.get(job_name)
        if found is None:
            found = next(
                (
                    queue
                    for pattern, queue in self.ROUTES.items()
                    if is_glob(pattern) and fnmatch.fnmatchcase(job_name, pattern)
                ),
                None,
            )
        if len(cache) < ROUTE_CACHE_MAX:
            cache[job_name] = found
        return found

    @property
    def rescue_interval(self) -> float:
        return self.RESCUE_INTERVAL if self.RESCUE_INTERVAL is not None else self.HEARTBEAT_INTERVAL

    @property
    def prepared_statements(self) -> bool:
        # Unset, it follows LISTEN and POOL_MODE: turning LISTEN off is how a transaction-mode pooler used to be
        # configured, and a pooler before PgBouncer 1.21 loses prepared statements between transactions.
        if self.PREPARED_STATEMENTS is not None:
            return self.PREPARED_STATEMENTS
        return self.LISTEN and self.POOL_MODE != "transaction"

    @property
    def listen_alias(self) -> str | None:
        """The database alias whose connection LISTENs for new jobs, or None: workers poll. ``LISTEN_DATABASE``
        when set (a connection of its own); else ``DATABASE``, unless it goes through a transaction-mode pooler,
        which would hand the LISTEN to one server connection and the next query to another."""
        if not self.LISTEN:
            return None
        if self.LISTEN_DATABASE is not None:
            return self.LISTEN_DATABASE
        return None if self.POOL_MODE == "transaction" else self.DATABASE


def is_glob(pattern: str) -> bool:
    """Whether a ``ROUTES`` key is a pattern (``*``, ``?``, ``[...]``) rather than a job name."""
    return not GLOB_CHARS.isdisjoint(pattern)


DURATION_KEYS = (
    "HEARTBEAT_INTERVAL",
    "WORKER_TIMEOUT",
    "RESCUE_INTERVAL",
    "POLL_INTERVAL",
    "RESULT_TTL",
    "FAILED_RESULT_TTL",
)
KNOWN_KEYS = {key for key in DjtasksSettings.__dataclass_fields__ if not key.startswith("_")}


class SettingError(ImproperlyConfigured):
    """One bad ``DJTASKS`` entry; ``hint`` says how to fix it (shown by the system check)."""

    def __init__(self, key: str, message: str, hint: str = "", check_id: str = "djtasks.E001") -> None:
        super().__init__(f"DJTASKS[{key!r}]: {message}")
        self.key = key
        self.hint = hint
        self.check_id = check_id


def duration_seconds(value: Any, what: str) -> float:
    """Seconds from an int, a float or a timedelta; negative values and other types are rejected."""
    try:
        seconds = durations.seconds(value, what)
    except TypeError:
        raise SettingError(
            what, f"expected seconds (int or float) or a timedelta, got {type(value).__name__}"
        ) from None
    if seconds < 0:
        raise SettingError(what, f"must not be negative, got {seconds}")
    return seconds


def _parse_queue(name: Any, options: Any) -> QueueConfig:
    if not isinstance(name, str) or not name:
        raise SettingError("QUEUES", f"queue names must be non-empty strings, got {name!r}")
    try:
        check_text(name, "queue name", max_chars=QUEUE_MAX_CHARS)
    except ValueError as exc:
        raise SettingError("QUEUES", str(exc), hint="use a short plain name, such as 'emails'") from None
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SettingError("QUEUES", f"options of queue {name!r} must be a dict, got {type(options).__name__}")
    unknown = set(options) - QUEUE_OPTIONS
    if unknown:
        raise SettingError(
            "QUEUES",
            f"queue {name!r} has unknown option(s) {sorted(unknown)}",
            hint=f"known options: {sorted(QUEUE_OPTIONS)}",
        )
    concurrency = options.get("concurrency")
    if concurrency is not None and (
        not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1
    ):
        raise SettingError(
            "QUEUES",
            f"queue {name!r}: concurrency must be a positive int, got {concurrency!r}",
            hint="the most jobs of this queue running at once across all workers; leave it out for no limit",
        )
    rate_limit = options.get("rate_limit")
    rate = None
    if rate_limit is not None:
        try:
            rate = parse_rate(rate_limit)
        except ValueError as exc:
            raise SettingError(
                "QUEUES",
                f"queue {name!r}: {exc}",
                hint="e.g. 'rate_limit': '100/m' (also /s and /h) or a number of starts per second",
            ) from None
    paused = options.get("paused", False)
    if not isinstance(paused, bool):
        raise SettingError(
            "QUEUES",
            f"queue {name!r}: paused must be True or False, got {paused!r}",
            hint="a paused queue starts nothing until resumed (manage.py djtasks resume, or the admin dashboard)",
        )
    return QueueConfig(name, concurrency, rate, paused)


def _parse_routes(raw: Any, queues: dict[str, QueueConfig]) -> dict[str, str]:
    hint = 'e.g. {"reports.*": "reports", "app.tasks.send_email": "emails"}: a job name or glob to a queue of QUEUES'
    if not isinstance(raw, dict):
        raise SettingError("ROUTES", f"must be a dict of job name or pattern to queue, got {type(raw).__name__}", hint)
    routes: dict[str, str] = {}
    for pattern, queue in raw.items():
        if not isinstance(pattern, str) or not pattern:
            raise SettingError("ROUTES", f"keys must be job names or glob patterns, got {pattern!r}", hint)
        if not isinstance(queue, str) or queue not in queues:
            raise SettingError(
                "ROUTES",
                f"{pattern!r} routes to queue {queue!r}, which is not in QUEUES",
                hint=f"add {queue!r} to DJTASKS['QUEUES'] or route to one of: {', '.join(queues)}",
                check_id="djtasks.E010",
            )
        routes[pattern] = queue
    return routes


def parse(raw: Any) -> DjtasksSettings:
    """Validate a ``DJTASKS`` dict and return the typed settings; raises ``SettingError`` on the first fault."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingError("*", f"DJTASKS must be a dict, got {type(raw).__name__}")
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise SettingError(
            sorted(unknown)[0],
            "unknown setting",
            hint=f"known settings: {', '.join(sorted(KNOWN_KEYS))}",
        )
    values: dict[str, Any] = {}
    for key in DURATION_KEYS:
        if key in raw and not (key == "RESCUE_INTERVAL" and raw[key] is None):
            values[key] = duration_seconds(raw[key], key)
    for key in ("HEARTBEAT_INTERVAL", "POLL_INTERVAL", "WORKER_TIMEOUT", "RESCUE_INTERVAL"):
        if key in values and values[key] == 0:
            raise SettingError(key, "must be greater than zero")
    if "DATABASE" in raw:
        if not isinstance(raw["DATABASE"], str):
            raise SettingError("DATABASE", "must be a database alias (a string)")
        values["DATABASE"] = raw["DATABASE"]
    if "LISTEN" in raw:
        if not isinstance(raw["LISTEN"], bool):
            raise SettingError("LISTEN", "must be True or False")
        values["LISTEN"] = raw["LISTEN"]
    if raw.get("LISTEN_DATABASE") is not None:
        alias = raw["LISTEN_DATABASE"]
        if not isinstance(alias, str) or not alias:
            raise SettingError(
                "LISTEN_DATABASE",
                f"must be a database alias (a string) or None, got {alias!r}",
                hint="the alias of a direct (unpooled) connection to the djtasks database, used only for LISTEN",
                check_id="djtasks.E020",
            )
        values["LISTEN_DATABASE"] = alias
    if raw.get("POOL_MODE") is not None:
        mode = raw["POOL_MODE"]
        if mode == "statement":
            raise SettingError(
                "POOL_MODE",
                "statement pooling cannot run djtasks: claims, completions and enqueues need transactions",
                hint="point DJTASKS['DATABASE'] at a pool in transaction or session mode",
                check_id="djtasks.E021",
            )
        if mode not in POOL_MODES:
            raise SettingError(
                "POOL_MODE",
                f"must be 'transaction', 'session' or None, got {mode!r}",
                hint="the pool_mode of the PgBouncer (or other pooler) DJTASKS['DATABASE'] goes through; None when "
                "it connects to PostgreSQL directly",
                check_id="djtasks.E021",
            )
        values["POOL_MODE"] = mode
    if "PREPARED_STATEMENTS" in raw:
        if raw["PREPARED_STATEMENTS"] is not None and not isinstance(raw["PREPARED_STATEMENTS"], bool):
            raise SettingError(
                "PREPARED_STATEMENTS",
                "must be True, False or None",
                hint="None (the default) is on unless LISTEN is off or POOL_MODE is 'transaction'; False behind a "
                "pooler that does not keep prepared statements (PgBouncer before 1.21 in transaction mode)",
            )
        values["PREPARED_STATEMENTS"] = raw["PREPARED_STATEMENTS"]
    if "MAX_ARGS_BYTES" in raw:
        limit = raw["MAX_ARGS_BYTES"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= JSONB_MAX_BYTES:
            raise SettingError(
                "MAX_ARGS_BYTES",
                f"must be a number of bytes from 1 to {JSONB_MAX_BYTES:,} (what one jsonb value holds), got {limit!r}",
                hint=f"the default is {MAX_ARGS_BYTES_DEFAULT} (1 MiB); e.g. 4 * 1024 * 1024 for 4 MiB",
                check_id="djtasks.E009",
            )
        values["MAX_ARGS_BYTES"] = limit
    if "QUEUES" in raw:
        queues = raw["QUEUES"]
        if isinstance(queues, (list, tuple)):
            queues = {name: {} for name in queues}
        if not isinstance(queues, dict) or not queues:
            raise SettingError("QUEUES", "must be a non-empty dict of queue name to options")
        values["QUEUES"] = {name: _parse_queue(name, opts) for name, opts in queues.items()}
    if "DEFAULT_QUEUE" in raw:
        if not isinstance(raw["DEFAULT_QUEUE"], str):
            raise SettingError("DEFAULT_QUEUE", "must be a queue name (a string)")
        values["DEFAULT_QUEUE"] = raw["DEFAULT_QUEUE"]
    if "BEAT_SCHEDULE" in raw:
        try:
            values["BEAT_SCHEDULE"] = parse_settings(
                raw["BEAT_SCHEDULE"], max_args_bytes=values.get("MAX_ARGS_BYTES", MAX_ARGS_BYTES_DEFAULT)
            )
        except (ValueError, TypeError) as exc:
            raise SettingError(
                "BEAT_SCHEDULE",
                str(exc),
                hint='e.g. {"nightly": {"job": "app.tasks.build", "cron": "0 3 * * *", "tz": "Europe/Paris"}, '
                '"ping": {"job": "app.tasks.ping", "every": 30}}; see "Periodic jobs" in the README',
                check_id="djtasks.E005",
            ) from None
    if "ROUTES" in raw:
        values["ROUTES"] = _parse_routes(raw["ROUTES"], values.get("QUEUES") or DjtasksSettings().QUEUES)
    result = DjtasksSettings(**values)
    if result.DEFAULT_QUEUE not in result.QUEUES:
        raise SettingError(
            "DEFAULT_QUEUE",
            f"{result.DEFAULT_QUEUE!r} is not one of QUEUES ({', '.join(result.QUEUES)})",
            hint="add it to DJTASKS['QUEUES'] or set DEFAULT_QUEUE to one of them",
        )
    if result.HEARTBEAT_INTERVAL >= result.WORKER_TIMEOUT:
        raise SettingError(
            "WORKER_TIMEOUT",
            "must be longer than HEARTBEAT_INTERVAL, or live workers would be declared dead",
            hint="keep WORKER_TIMEOUT at several heartbeat intervals (default 30 s vs 5 s)",
        )
    return result


class _LazySettings:
    """Attribute access parses ``settings.DJTASKS`` once and caches it until a setting changes.

    The annotations below declare what each attribute returns (those of ``DjtasksSettings``, kept in step by a
    test), so ``djtasks_settings.QUEUES`` is typed; they set nothing, so every read goes to ``__getattr__``.
    """

    DATABASE: str
    QUEUES: dict[str, QueueConfig]
    DEFAULT_QUEUE: str
    HEARTBEAT_INTERVAL: float
    WORKER_TIMEOUT: float
    RESCUE_INTERVAL: float | None
    POLL_INTERVAL: float
    LISTEN: bool
    LISTEN_DATABASE: str | None
    POOL_MODE: str | None
    PREPARED_STATEMENTS: bool | None
    RESULT_TTL: float
    FAILED_RESULT_TTL: float
    BEAT_SCHEDULE: dict[str, ScheduleDef]
    MAX_ARGS_BYTES: int
    ROUTES: dict[str, str]
    rescue_interval: float
    prepared_statements: bool
    listen_alias: str | None

    def __init__(self) -> None:
        self._cached: DjtasksSettings | None = None

    def get(self) -> DjtasksSettings:
        if self._cached is None:
            self._cached = parse(getattr(settings, "DJTASKS", None))
        return self._cached

    def reset(self) -> None:
        self._cached = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


djtasks_settings = _LazySettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DJTASKS", "DATABASES"):
        djtasks_settings.reset()


setting_changed.connect(_on_setting_changed)
