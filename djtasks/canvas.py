"""Workflows: signatures composed into ``chain``, ``group`` and ``chord``, executed in the database.

Enqueueing a composition inserts every job of it at once (COPY, one transaction: the caller's when there is
one), so a rollback leaves nothing and the workflow never depends on a process staying alive. A step whose
input is not ready is a row in status ``waiting``; claims never see it. Each row lists in ``on_success`` the
steps waiting on it (``{"id", "pass"}``: ``pass`` is false for an immutable ``.si()`` step); a group's row in
``djtasks_group`` lists its members in order, counts in ``remaining`` those that have not succeeded, and
lists the jobs waiting on the whole group (a chord callback).

Hand-off happens in the transaction that records a job ``succeeded`` (``store.job_handoff_many``): the
waiting steps become ``queued`` with the result prepended to their arguments, and the job's group counter is
decremented; the transaction that brings it to 0 releases the callback with the members' results. A job that
fails for good or is cancelled cancels every step downstream of it (error naming the job that failed). So a
kill -9 or a database restart at any moment loses no step, and a callback runs once.

Nesting: a group inside a chain gives each member the previous result and, followed by a step, makes that
step its chord callback; a chain can be a group member (its last step's result is the member's); a chord's
callback can be a chain. A member that is itself a group (or ends with one) is refused: flatten it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import serialization, signals
from .conf import djtasks_settings
from .cursors import django_store
from .ids import uuid7
from .registry import registry
from .results import GroupResult, JobResult

COMPOSE_OPTIONS = frozenset({"countdown", "eta", "priority", "queue", "expires", "time_limit", "soft_time_limit"})
FIRST_STEP_OPTIONS = frozenset({"countdown", "eta"})  # a composition's delay applies to the steps that run first


@dataclass
class Signature:
    """A job name with arguments and enqueue options (``job.s(...)``, ``job.si(...)``).

    Arguments are checked when the signature is made (JSON only), so a bad one fails at the call. ``a | b``
    chains signatures and compositions.
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    immutable: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        serialization.dumps_args(self.args, self.kwargs)  # raises SerializationError naming the argument

    @property
    def job(self) -> Any:
        return registry.get(self.name)

    def set(self, **options: Any) -> Signature:
        """Return a copy with enqueue options (those of ``apply_async``) added."""
        return Signature(self.name, self.args, self.kwargs, self.immutable, {**self.options, **options})

    def delay(self) -> JobResult:
        result: JobResult = self.job.apply_async(self.args, self.kwargs, **self.options)
        return result

    def apply_async(self, **options: Any) -> JobResult:
        result: JobResult = self.job.apply_async(self.args, self.kwargs, **{**self.options, **options})
        return result

    def __or__(self, other: Any) -> chain:
        return chain(self, other)


class _Composition:
    """What chain, group and chord share: ``|``, ``delay()`` and ``apply_async()``."""

    def __or__(self, other: Any) -> chain:
        return chain(self, other)

    def delay(self) -> Any:
        """Enqueue every job of the composition (in the caller's transaction, if any); returns at once."""
        return self.apply_async()

    def apply_async(self, **options: Any) -> Any:
        """Enqueue with options for the whole composition: ``queue``, ``priority``, ``expires``,
        ``time_limit``, ``soft_time_limit`` apply to every step that does not set its own; ``countdown`` /
        ``eta`` delay the steps that run first. Returns the ``JobResult`` of the last step (a chain, a chord)
        or a ``GroupResult`` (a group, or a chain ending with one)."""
        unknown = set(options) - COMPOSE_OPTIONS
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.apply_async: unknown option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(COMPOSE_OPTIONS))}"
            )
        return _enqueue(self, options)


class chain(_Composition):  # noqa: N801 - named as Celery users know it
    """``chain(a.s(1), b.s(), c.si(5))``, the same as ``a.s(1) | b.s() | c.si(5)``: each step's return value
    becomes the first argument of the next ``.s()`` step. A step that fails for good or is cancelled ends
    the chain: the later steps end ``cancelled`` naming it."""

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], (Signature, _Composition)) and _iterable(tasks[0]):
            tasks = tuple(tasks[0])
        flat: list[Any] = []
        for index, task in enumerate(tasks):
            _check_node("chain", index, task)
            flat.extend(task.tasks if isinstance(task, chain) else [task])
        if not flat:
            raise ValueError("chain() needs at least one signature")
        self.tasks: tuple[Any, ...] = tuple(flat)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


class group(_Composition):  # noqa: N801
    """``group(resize.s(i) for i in ids)``: jobs that run independently; ``delay()`` returns a
    ``GroupResult``. A group followed by a step in a chain is a chord."""

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], (Signature, _Composition)) and _iterable(tasks[0]):
            tasks = tuple(tasks[0])
        for index, task in enumerate(tasks):
            _check_node("group", index, task)
            if isinstance(task, group) or (isinstance(task, chain) and isinstance(task.tasks[-1], group)):
                raise TypeError(
                    f"group member {index} is (or ends with) a group; a group's members are jobs, chains or chords: "
                    "flatten the inner group's members into this one"
                )
        self.tasks: tuple[Any, ...] = tuple(tasks)

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"


class chord(_Composition):  # noqa: N801
    """``chord(header, callback)``: the callback runs once, after every header job succeeded, with the list of
    their results (in header order) as first argument; ``delay()`` returns the callback's ``JobResult`` (the
    last step's, when the callback is a chain). If a header job fails for good the callback ends
    ``cancelled`` naming it (the other header jobs still run). An empty header runs the callback at once
    with ``[]``."""

    def __init__(self, header: Any, body: Any) -> None:
        self.header = header if isinstance(header, group) else group(header)
        _check_node("chord callback", 0, body)
        if isinstance(body, group):
            raise TypeError("a chord callback must be a signature, a chain or a chord, not a group")
        self.body = body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict))


def _check_node(where: str, index: int, task: Any) -> None:
    if not isinstance(task, (Signature, _Composition)):
        raise TypeError(
            f"{where} item {index} must be a signature (job.s(...) or job.si(...)), a chain, a group or a chord; "
            f"got {type(task).__name__} {task!r:.60}"
        )


# -- building rows -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Input:
    """What a node waits for: nothing (``kind="none"``), a ready value (an empty chord header's ``[]``), a job
    or a group."""

    kind: str
    id: uuid.UUID | None = None
    value: Any = None


_NOW = _Input("none")


class _Builder:
    def __init__(self, now: datetime, options: dict[str, Any]) -> None:
        self.now = now
        self.common = {k: v for k, v in options.items() if k not in FIRST_STEP_OPTIONS}
        self.first = {k: v for k, v in options.items() if k in FIRST_STEP_OPTIONS}
        self.jobs: dict[uuid.UUID, dict[str, Any]] = {}
        self.groups: dict[uuid.UUID, dict[str, Any]] = {}
        self.edges: dict[uuid.UUID, list[dict[str, Any]]] = {}  # parent job or group id -> waiting steps

    def build(self, node: Any, after: _Input) -> _Input:
        if isinstance(node, Signature):
            return self._signature(node, after)
        if isinstance(node, chain):
            for task in node.tasks:
                after = self.build(task, after)
            return after
        if isinstance(node, chord):
            header = self.build(node.header, after)
            return self.build(node.body, header)
        assert isinstance(node, group)
        return self._group(node, after)

    def _group(self, node: group, after: _Input) -> _Input:
        members = [self.build(task, after) for task in node.tasks]
        if not members and after.kind not in ("none", "value"):
            raise ValueError("an empty group cannot wait for a previous step: it would have nothing to wait for")
        group_id = uuid7()
        for index, member in enumerate(members):
            if member.kind != "job" or member.id is None:  # e.g. a chord whose callback chain ends with a group
                raise TypeError(
                    f"group member {index} ends with a group; a member's result must be one job's: "
                    "flatten the inner group's members into this one"
                )
            self.jobs[member.id]["group_id"] = group_id
        self.groups[group_id] = {
            "id": group_id,
            "total": len(members),
            "members": [m.id for m in members],
            "parent_id": after.id,
        }
        if not members:  # an empty header: whatever follows runs at once with []
            return _Input("value", value=[], id=group_id)
        return _Input("group", group_id)

    def _signature(self, sig: Signature, after: _Input) -> _Input:
        job = sig.job
        options = {**self.common, **(self.first if after.kind in ("none", "value") else {}), **sig.options}
        for key in ("unique_key",):
            if key in options:
                raise ValueError(f"{sig.name}: {key} is not supported for a step of a workflow")
        args = list(sig.args)
        if after.kind == "value" and not sig.immutable:
            args = [after.value, *args]
        row = job._row(args, sig.kwargs, self.now, **options)
        if row["id"] in self.jobs:
            raise ValueError(f"{sig.name}: job_id {row['id']} is used twice in this workflow")
        waits = after.kind in ("job", "group")
        row.update(status="waiting" if waits else "queued", parent_id=after.id, group_id=None)
        if waits:
            assert after.id is not None
            self.edges.setdefault(after.id, []).append({"id": str(row["id"]), "pass": not sig.immutable})
        self.jobs[row["id"]] = row
        return _Input("job", row["id"])

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        jobs = []
        for job_id, row in self.jobs.items():
            edges = self.edges.get(job_id)
            jobs.append({**row, "on_success": json.dumps(edges) if edges else None})
        groups = []
        for group_id, g in self.groups.items():
            edges = self.edges.get(group_id)
            groups.append(
                {
                    **g,
                    "members": json.dumps([str(m) for m in g["members"]]),
                    "on_success": json.dumps(edges) if edges else None,
                }
            )
        return jobs, groups


def _enqueue(node: _Composition, options: dict[str, Any]) -> Any:
    now = timezone.now()
    builder = _Builder(now, options)
    out = builder.build(node, _NOW)
    jobs, groups = builder.rows()
    store = django_store()
    with transaction.atomic(using=djtasks_settings.DATABASE):
        store.job_insert_workflow_many(now=now, jobs=jobs)
        store.group_insert_many(now=now, groups=groups)
    for row in jobs:
        signals.job_enqueued.send(sender=registry.get(row["name"]), job_id=row["id"], queue=row["queue"],
                                  run_at=row["run_at"])  # fmt: skip
    if out.kind == "job":
        assert out.id is not None
        return JobResult(out.id, name=builder.jobs[out.id]["name"])
    assert out.id is not None
    return GroupResult(out.id)
