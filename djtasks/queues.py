"""Run-time queue options: pause, resume, limits. Shared by ``djtasks.pause_queue``, the admin and
``manage.py djtasks pause|resume|queue``.

Precedence: ``DJTASKS['QUEUES']`` gives each option's default. An option set at run time is stored in the
queue's ``djtasks_queue`` row, listed in its ``overrides``, and wins over the settings, across restarts and
deploys, until it is reset (``reset_queue_options``, ``manage.py djtasks queue NAME --reset``, the admin's
"reset to settings"). Options nobody overrode follow the settings: a worker writes them when it starts.
Every change NOTIFYs the workers, which apply it at once (or within ``POLL_INTERVAL`` without LISTEN).

Bad input raises ``QueueOptionError`` (a ``ValueError``) naming the queue and the value, and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .conf import djtasks_settings
from .cursors import django_store
from .flow import RateLimit, parse_rate
from .store import Store

OPTIONS = ("concurrency", "rate_limit", "paused")
UNSET = object()  # "leave this option as it is"


class QueueOptionError(ValueError):
    """A bad queue name or option value (the message names both)."""


@dataclass(frozen=True)
class QueueState:
    """A queue's effective options and where each comes from."""

    name: str
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    paused: bool = False
    overrides: tuple[str, ...] = ()  # options set at run time (the others follow the settings)
    configured: bool = True  # in DJTASKS['QUEUES']

    @property
    def rate_text(self) -> str:
        return self.rate_limit.text if self.rate_limit else ""

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None


@dataclass(frozen=True)
class JobLimit:
    name: str
    concurrency: int


@dataclass
class FlowState:
    queues: dict[str, QueueState] = field(default_factory=dict)
    jobs: list[JobLimit] = field(default_factory=list)


def _known(name: Any) -> str:
    queues = djtasks_settings.QUEUES
    if not isinstance(name, str) or name not in queues:
        raise QueueOptionError(f"unknown queue {name!r}: DJTASKS['QUEUES'] has {', '.join(queues)}")
    return name


def clean_concurrency(queue: str, value: Any) -> int | None:
    """``None`` (no limit) or a positive int; ``"none"`` and ``""`` also mean no limit, digits are read."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueueOptionError(f"queue {queue!r}: concurrency must be a positive int or none, got {value!r}")
    return value


def clean_rate_limit(queue: str, value: Any) -> RateLimit | None:
    """``None`` (no limit) or a rate like ``"100/m"``; ``"none"`` and ``""`` also mean no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise QueueOptionError(f"queue {queue!r}: {exc}") from None


def set_queue_options(
    name: str, *, concurrency: Any = UNSET, rate_limit: Any = UNSET, paused: Any = UNSET, reset: Any = ()
) -> QueueState:
    """Change a queue's run-time options; each one given overrides the settings until reset.

    ``concurrency``: a positive int, or ``None`` for no limit. ``rate_limit``: ``"100/m"``, ``"10/s"``,
    ``"500/h"``, a number per second, or ``None``. ``paused``: ``True``/``False``. ``reset``: option names
    (or ``"all"``) to hand back to ``DJTASKS['QUEUES']``. Validates everything before writing anything.
    """
    name = _known(name)
    if reset == "all":
        reset = OPTIONS
    reset = tuple(reset)
    unknown = [o for o in reset if o not in OPTIONS]
    if unknown:
        raise QueueOptionError(f"queue {name!r}: cannot reset unknown option(s) {unknown}; options: {list(OPTIONS)}")
    default = djtasks_settings.QUEUES[name]
    values = {
        "concurrency": default.concurrency,
        "rate_limit": default.rate_limit.text if default.rate_limit else "",
        "paused": default.paused,
    }
    overridden = []
    if concurrency is not UNSET:
        values["concurrency"] = clean_concurrency(name, concurrency)
        overridden.append("concurrency")
    if rate_limit is not UNSET:
        rate = clean_rate_limit(name, rate_limit)
        values["rate_limit"] = rate.text if rate else ""
        overridden.append("rate_limit")
    if paused is not UNSET:
        if not isinstance(paused, bool):
            raise QueueOptionError(f"queue {name!r}: paused must be True or False, got {paused!r}")
        values["paused"] = paused
        overridden.append("paused")
    clash = set(overridden) & set(reset)
    if clash:
        raise QueueOptionError(f"queue {name!r}: cannot both set and reset {sorted(clash)}")
    if not overridden and not reset:
        return queue_state(name)
    row = django_store().queue_set(now=timezone.now(), name=name, values=values, overridden=overridden, reset=reset)
    return _state(row, configured=True)


def pause_queue(name: str) -> QueueState:
    """Pause ``name`` across the fleet: no job of it starts (running ones finish; enqueueing still works)
    until ``resume_queue``. Survives restarts; overrides ``DJTASKS['QUEUES'][name]['paused']``. Raises
    ``QueueOptionError`` (a ``ValueError``) for a queue not in ``DJTASKS['QUEUES']``."""
    return set_queue_options(name, paused=True)


def resume_queue(name: str) -> QueueState:
    """Let jobs of ``name`` start again (workers pick them up at once)."""
    return set_queue_options(name, paused=False)


def reset_queue_options(name: str) -> QueueState:
    """Hand every option of ``name`` back to ``DJTASKS['QUEUES']``."""
    return set_queue_options(name, reset=OPTIONS)


def _state(row: dict[str, Any], *, configured: bool) -> QueueState:
    try:
        rate = parse_rate(row["rate_limit"]) if row["rate_limit"] else None
    except ValueError:
        rate = None
    overrides = row["overrides"]
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    return QueueState(
        name=row["name"],
        concurrency=row["concurrency"],
        rate_limit=rate,
        paused=row["paused"],
        overrides=tuple(overrides or ()),
        configured=configured,
    )


def flow_state(store: Store | None = None) -> FlowState:
    """Every configured queue's effective options (its row, else the settings before any worker wrote
    one), queues with a row but no longer configured, and the job names with a concurrency limit."""
    rows = (store or django_store()).queue_options_list()
    configured = djtasks_settings.QUEUES
    state = FlowState()
    by_name = {row["name"]: row for row in rows if row["kind"] == "queue"}
    for name, cfg in configured.items():
        row = by_name.get(name)
        state.queues[name] = (
            _state(row, configured=True)
            if row is not None
            else QueueState(name, cfg.concurrency, cfg.rate_limit, cfg.paused)
        )
    for name, row in by_name.items():
        if name not in configured:
            state.queues[name] = _state(row, configured=False)
    state.jobs = [
        JobLimit(row["name"], row["concurrency"]) for row in rows if row["kind"] == "job" and row["concurrency"]
    ]
    return state


def queue_state(name: str) -> QueueState:
    """One configured queue's effective options."""
    return flow_state().queues[_known(name)]
