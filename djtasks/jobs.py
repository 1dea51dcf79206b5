"""``@job``, the ``Job`` it makes, signatures and the ``JobContext`` a bound job receives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from . import inputs, serialization, signals, tracing
from .canvas import Signature
from .conf import djtasks_settings
from .cursors import django_store, guarded
from .exceptions import Retry, SerializationError
from .ids import uuid7, uuid7_many
from .priority import check_priority
from .registry import registry
from .timelimits import check_time_limits

DEFAULT_RETRY_BACKOFF_S = 1.0  # base delay when retry_backoff=True
DEFAULT_RETRY_BACKOFF_MAX_S = 600.0
# Wait before a retry when neither a countdown nor a backoff says otherwise: long enough that a dependency
# that just fell over is not hit again within the same second, short enough for an interactive loop.
DEFAULT_RETRY_DELAY_S = 10.0
BULK_BATCH_SIZE = 5000  # rows per INSERT statement in bulk_delay
CANCEL_CHECK_INTERVAL_S = 0.5  # JobContext.is_cancelled() reads the row at most this often
PROGRESS_INTERVAL_S = 0.5  # JobContext.set_progress() writes at most this often (the last value at the end)
UNIQUE_KEY_MAX = inputs.UNIQUE_KEY_MAX_CHARS  # characters; the key is indexed

JOB_OPTIONS = frozenset(
    {
        "name",
        "queue",
        "priority",
        "max_attempts",
        "retry_backoff",
        "retry_backoff_max",
        "retry_on",
        "retry_delay",
        "bind",
        "time_limit",
        "soft_time_limit",
        "unique",
        "unique_for",
        "concurrency",
    }
)


def backoff_seconds(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before the attempt after ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped at ``cap``,
    with "equal jitter": half the delay is fixed and half is ``rand`` (0..1) of it, so retries spread out
    but never come sooner than half the nominal delay."""
    nominal = min(cap, base * 2.0 ** (attempt - 1))
    return nominal / 2 + nominal / 2 * rand


def _check_number(job_name: str, option: str, value: Any, *, minimum: float, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"@job {job_name!r}: {option} must be a number, got {value!r}")
    if value < minimum or (not allow_zero and value == 0):
        raise ImproperlyConfigured(
            f"@job {job_name!r}: {option} must be {'>' if not allow_zero else '>='} {minimum}, got {value!r}"
        )
    return float(value)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class JobContext:
    """What a ``@job(bind=True)`` function receives as its first argument."""

    job_id: uuid.UUID | None
    name: str
    attempt: int
    max_attempts: int
    queue: str
    cancel_observed: bool = field(default=False, repr=False, compare=False)
    _cancel_checked_at: float = field(default=-math.inf, repr=False, compare=False)
    _progress_written_at: float = field(default=-math.inf, repr=False, compare=False)
    _progress_pending: str | None = field(default=None, repr=False, compare=False)

    def set_progress(self, value: Any) -> None:
        """Report progress: any JSON value, e.g. ``{"done": 40, "total": 100}``; ``JobResult.progress`` reads it.

        Cheap to call per item: writes are coalesced to at most one every ``PROGRESS_INTERVAL_S`` (the first
        at once), and the last value is always written when the job ends. A value JSON cannot carry raises
        ``SerializationError`` (a ``TypeError``) here. Does nothing when the job runs inline."""
        text = serialization.dumps(value, "progress")
        if self.job_id is None:
            return
        self._progress_pending = text
        if time.monotonic() - self._progress_written_at >= PROGRESS_INTERVAL_S and not _in_event_loop():
            self.flush_progress()  # (in an async job the write waits for aset_progress() or the job's end)

    async def aset_progress(self, value: Any) -> None:
        """``set_progress()`` for an ``async def`` job (the write goes through ``sync_to_async``)."""
        text = serialization.dumps(value, "progress")
        if self.job_id is None:
            return
        self._progress_pending = text
        if time.monotonic() - self._progress_written_at >= PROGRESS_INTERVAL_S:
            await sync_to_async(self.flush_progress, thread_sensitive=True)()

    def flush_progress(self) -> None:
        """Write the progress value not written yet, if any (the worker calls it when the job ends)."""
        text, self._progress_pending = self._progress_pending, None
        if text is None or self.job_id is None:
            return
        from .operations import set_progress

        self._progress_written_at = time.monotonic()
        set_progress(self.job_id, self.attempt, text)

    def is_cancelled(self) -> bool:
        """True once someone asked to cancel this running job (``JobResult.cancel()``, the admin,
        ``manage.py djtasks cancel``). Check it between units of work and stop: return or raise, and the job
        ends ``cancelled`` (it is not retried). Reads the job row at most every
        ``CANCEL_CHECK_INTERVAL_S``, so calling it in a loop is cheap; always False when run inline."""
        if self.job_id is None or self.cancel_observed:
            return self.cancel_observed
        now = time.monotonic()
        if now - self._cancel_checked_at >= CANCEL_CHECK_INTERVAL_S:
            from .operations import cancel_requested

            self._cancel_checked_at = now
            self.cancel_observed = cancel_requested(self.job_id)
        return self.cancel_observed

    async def ais_cancelled(self) -> bool:
        """``is_cancelled()`` for an ``async def`` job (the row is read through ``sync_to_async``)."""
        if self.job_id is None or self.cancel_observed:
            return self.cancel_observed
        if time.monotonic() - self._cancel_checked_at < CANCEL_CHECK_INTERVAL_S:
            return False  # read a moment ago: no thread hop until the row is due to be read again
        return await sync_to_async(self.is_cancelled, thread_sensitive=True)()

    def retry(self, countdown: float | None = None, exc: BaseException | None = None) -> None:
        """End this attempt and run the job again after ``countdown`` seconds (default: the job's backoff if it
        has one, else its ``retry_delay``).

        Counts as an attempt: when ``max_attempts`` is spent the job fails with ``exc`` (or ``Retry``).
        ``countdown`` may be a timedelta; a negative, NaN or absurdly far one raises here, in the job.
        """
        if countdown is not None:
            now = timezone.now()
            countdown = (inputs.run_at("ctx.retry", now, countdown=countdown) - now).total_seconds()
        raise Retry(countdown=countdown, exc=exc)


class Job:
    """A registered job. Calling it runs the function inline; ``delay``/``apply_async`` enqueue it."""

    # What the worker calls around a job besides its function: set by the django.tasks backend for its tasks
    # (their context and Django's signals); None for @job.
    hooks: Any = None

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        unknown = set(options) - JOB_OPTIONS
        name = options.get("name") or f"{func.__module__}.{func.__qualname__}"
        if unknown:
            raise TypeError(
                f"@job {name!r}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(JOB_OPTIONS))}"
            )
        if not isinstance(name, str):
            raise TypeError(f"@job on {func.__qualname__}: name must be a string, got {name!r}")
        try:
            inputs.check_name(f"@job on {func.__qualname__}", "name", name, inputs.NAME_MAX_CHARS)
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        self.func = func
        self.name = name
        self.queue: str | None = options.get("queue")
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise TypeError(f"@job {name!r}: queue must be a non-empty string, got {self.queue!r}")
        self.priority = check_priority(f"@job {name!r}", options.get("priority", 0), bad_value=ImproperlyConfigured)
        max_attempts = options.get("max_attempts", 1)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"@job {name!r}: max_attempts must be an int, got {max_attempts!r}")
        if max_attempts < 1:
            raise ImproperlyConfigured(
                f"@job {name!r}: max_attempts must be at least 1 (1 = no retry), got {max_attempts}"
            )
        if max_attempts > inputs.INT_COLUMN_MAX:
            raise ImproperlyConfigured(f"@job {name!r}: max_attempts must be at most {inputs.INT_COLUMN_MAX}")
        self.max_attempts = max_attempts
        backoff = options.get("retry_backoff", False)
        if backoff is True:
            self.retry_backoff = DEFAULT_RETRY_BACKOFF_S
        elif backoff is False or backoff is None:
            self.retry_backoff = 0.0
        else:
            self.retry_backoff = _check_number(name, "retry_backoff", backoff, minimum=0, allow_zero=False)
        self.retry_backoff_max = _check_number(
            name,
            "retry_backoff_max",
            options.get("retry_backoff_max", DEFAULT_RETRY_BACKOFF_MAX_S),
            minimum=0,
            allow_zero=False,
        )
        retry_delay = options.get("retry_delay", DEFAULT_RETRY_DELAY_S)
        if isinstance(retry_delay, timedelta):
            retry_delay = retry_delay.total_seconds()
        self.retry_delay = _check_number(name, "retry_delay", retry_delay, minimum=0)
        retry_on = options.get("retry_on", (Exception,))
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, (tuple, list)) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in retry_on
        ):
            raise TypeError(f"@job {name!r}: retry_on must be an exception class or a tuple of them, got {retry_on!r}")
        self.retry_on: tuple[type[BaseException], ...] = tuple(retry_on)
        self.time_limit, self.soft_time_limit = check_time_limits(
            f"@job {name!r}",
            options.get("time_limit"),
            options.get("soft_time_limit"),
            bad_value=ImproperlyConfigured,
        )
        self.unique_for: float | None = None
        unique_for = options.get("unique_for")
        if unique_for is not None:
            if isinstance(unique_for, timedelta):
                unique_for = unique_for.total_seconds()
            if isinstance(unique_for, bool) or not isinstance(unique_for, (int, float)):
                raise TypeError(f"@job {name!r}: unique_for must be a number of seconds, got {unique_for!r}")
            if not math.isfinite(unique_for) or unique_for <= 0:
                raise ValueError(f"@job {name!r}: unique_for must be a positive number of seconds, got {unique_for!r}")
            self.unique_for = float(unique_for)
        self.unique = options.get("unique", unique_for is not None)
        if not isinstance(self.unique, bool):
            raise TypeError(f"@job {name!r}: unique must be True or False, got {self.unique!r}")
        if unique_for is not None and not self.unique:
            raise ImproperlyConfigured(f"@job {name!r}: unique_for needs unique=True (or leave unique out)")
        concurrency = options.get("concurrency")
        if concurrency is not None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int):
                raise TypeError(f"@job {name!r}: concurrency must be an int, got {concurrency!r}")
            if concurrency < 1:
                raise ImproperlyConfigured(
                    f"@job {name!r}: concurrency must be at least 1 (leave it out for no limit), got {concurrency}"
                )
        self.concurrency: int | None = concurrency
        self.bind = options.get("bind", False)
        if not isinstance(self.bind, bool):
            raise TypeError(f"@job {name!r}: bind must be True or False")
        if self.bind:
            params = list(inspect.signature(func).parameters.values())
            if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
                raise TypeError(f"@job {name!r}: bind=True needs the function's first parameter to take the JobContext")
        # An ``async def`` job runs on the worker process's event loop, many at once (--async-concurrency).
        self.is_async = inspect.iscoroutinefunction(func)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)
        self.__module__ = func.__module__
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<Job {self.name}>"

    # -- running --------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run inline, in this process, as a plain function call."""
        if self.bind:
            ctx = JobContext(None, self.name, 1, self.max_attempts, self.queue or djtasks_settings.DEFAULT_QUEUE)
            return self.func(ctx, *args, **kwargs)
        return self.func(*args, **kwargs)

    def encode_result(self, value: Any) -> str:
        """The JSON text stored as the job's result (``SerializationError`` if it cannot be)."""
        return serialization.dumps(value, "result")

    def retry_in(self, attempt: int, rand: float | None = None, countdown: float | None = None) -> float:
        """Seconds before the next attempt after failed attempt number ``attempt`` (1-based): ``countdown``
        if given (``ctx.retry(countdown=...)``), else the backoff if the job has one, else ``retry_delay``.
        ``rand`` (0..1) is the backoff's jitter; random when ``None``."""
        if countdown is not None:
            return countdown
        if not self.retry_backoff:
            return self.retry_delay
        return backoff_seconds(
            attempt,
            base=self.retry_backoff,
            cap=self.retry_backoff_max,
            rand=random.random() if rand is None else rand,
        )

    def should_retry(self, exc: BaseException, attempt: int, max_attempts: int) -> bool:
        """Whether exception ``exc`` raised by attempt ``attempt`` is retried: attempts remain and ``exc`` is
        one of ``retry_on`` (by default any ``Exception``; ``SystemExit`` and other ``BaseException``s never).
        ``ctx.retry()`` retries whatever ``retry_on`` says, while attempts remain."""
        return attempt < max_attempts and isinstance(exc, self.retry_on)

    # -- enqueueing -----------------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> JobResult:
        """Enqueue with the job's default options. Inside ``transaction.atomic()`` the job exists exactly
        when that transaction commits."""
        return self._enqueue(f"{self.name}.delay", args, kwargs, {})

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        job_id: uuid.UUID | str | None = None,
        time_limit: float | timedelta | None = None,
        soft_time_limit: float | timedelta | None = None,
        unique_key: str | None = None,
    ) -> JobResult:
        """Enqueue with per-call options.

        ``countdown`` (seconds) or ``eta`` (an aware datetime) delay the first run; ``expires`` (seconds from
        now, a timedelta, or an aware datetime) cancels the job if no worker started it by then; ``queue`` and
        ``priority`` (-100..100, higher first) override the job's; ``job_id`` fixes the id (a UUID);
        ``time_limit`` / ``soft_time_limit`` (seconds) override the job's limits for this call.
        ``unique_key`` (a string) makes this call unique: while a job with that key is queued or running
        (or, with ``@job(unique_for=N)``, was enqueued in the last N seconds) nothing is inserted and the
        existing job's ``JobResult`` is returned with ``deduplicated`` True. ``@job(unique=True)`` does the
        same for every call, keyed by the job's name and arguments. Keys are global across job names.

        Everything is checked before any SQL is sent: bad options raise ``ValueError``/``TypeError``, and
        arguments the database cannot store ``SerializationError`` (see ``djtasks.serialization``). A
        ``job_id`` that exists already raises ``EnqueueError`` and leaves an enclosing transaction usable.
        """
        options = {
            "countdown": countdown,
            "eta": eta,
            "expires": expires,
            "queue": queue,
            "priority": priority,
            "job_id": job_id,
            "time_limit": time_limit,
            "soft_time_limit": soft_time_limit,
            "unique_key": unique_key,
        }
        return self._enqueue(f"{self.name}.apply_async", args, kwargs, options)

    def _enqueue(
        self, where: str, args: Iterable[Any] | None, kwargs: dict[str, Any] | None, options: dict[str, Any]
    ) -> JobResult:
        now = timezone.now()
        unique_key = options.pop("unique_key", None)
        row = self._row(args, kwargs, now, where=where, **options)
        job_id, inserted = self._store_row(
            row, now, where=where, unique_key=unique_key, guard=options.get("job_id") is not None
        )
        return JobResult(job_id, name=self.name, deduplicated=not inserted)

    def _store_row(
        self, row: dict[str, Any], now: datetime, *, where: str, unique_key: str | None = None, guard: bool = False
    ) -> tuple[uuid.UUID, bool]:
        """INSERT one row made by ``_row()`` unless it is a duplicate of an active unique job; returns the id of
        the job that stands for the call and whether it was inserted (False: the existing job's id)."""
        if unique_key is None and self.unique:
            digest = hashlib.sha256(f"{row['args']}\x00{row['kwargs']}".encode()).hexdigest()[:32]
            unique_key = f"{self.name}:{digest}"
        if unique_key is None:
            self._insert(row, now, where=where, guard=guard)
            return row["id"], True
        inputs.check_unique_key(where, unique_key)
        since = None if self.unique_for is None else now - timedelta(seconds=self.unique_for)
        # A taken key is not an error (ON CONFLICT in the query); a caller-chosen id that exists is.
        with guarded(where) if guard else contextlib.nullcontext():
            job_id, inserted = _django_store.job_insert_unique(now=now, unique_key=unique_key, since=since, **row)
        if not inserted:
            return job_id, False
        signals.job_enqueued.send(sender=self, job_id=row["id"], queue=row["queue"], run_at=row["run_at"])
        return row["id"], True

    def _insert(self, row: dict[str, Any], now: datetime, *, where: str | None = None, guard: bool = False) -> None:
        """INSERT one row made by ``_row()`` on Django's connection (the caller's transaction), then signal.

        Everything in the row was checked by ``_row()`` and a fresh UUIDv7 cannot collide, so there is nothing
        left for the database to refuse and no savepoint is taken (one would cost a ``.delay()`` inside a
        transaction a third of its speed). ``guard`` (a caller-chosen id, which may exist already) runs it in
        a savepoint that is rolled back on error, raising ``EnqueueError``.
        """
        if guard:
            with guarded(where or f"{self.name}.apply_async"):
                _django_store.job_insert(now=now, **row)
        else:
            _django_store.job_insert(now=now, **row)
        signals.job_enqueued.send(sender=self, job_id=row["id"], queue=row["queue"], run_at=row["run_at"])

    async def adelay(self, *args: Any, **kwargs: Any) -> JobResult:
        """``delay()`` for async code (an async view): the INSERT runs through ``sync_to_async`` on Django's
        thread-sensitive executor, so it uses the same connection, and joins the same transaction, as the
        view's other database calls."""
        return await sync_to_async(self.apply_async, thread_sensitive=True)(args=args, kwargs=kwargs)

    async def aapply_async(
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> JobResult:
        """``apply_async()`` for async code; see ``adelay()``."""
        return await sync_to_async(self.apply_async, thread_sensitive=True)(args, kwargs, **options)

    def bulk_delay(self, items: Iterable[Any]) -> list[JobResult]:
        """Enqueue many calls at once, thousands of rows per statement, all or none.

        Each item is a tuple/list of positional arguments, or a signature of this job (``job.s(...)``) to
        pass keyword arguments and options too. Every item is checked before anything is sent: one bad item
        refuses the whole batch (``SerializationError``, ``TypeError``, ``ValueError`` naming the item).
        The batch runs in a transaction of its own, or in a savepoint of the caller's, so a database error
        (e.g. a signature's ``job_id`` that exists) raises ``EnqueueError`` and leaves the caller's
        transaction usable. A ``unique`` job is enqueued one call at a time (each checked against its key, in
        one transaction), so its duplicates come back with ``deduplicated`` True.
        """
        if self.unique:
            with transaction.atomic(using=djtasks_settings.DATABASE):
                return [
                    item.apply_async() if isinstance(item, Signature) else self.apply_async(args=item) for item in items
                ]
        now = timezone.now()
        where = f"{self.name}.bulk_delay"
        max_bytes = djtasks_settings.get().MAX_ARGS_BYTES
        rows = []
        template: dict[str, Any] | None = None  # the row of a plain call: validated once, copied per item
        for index, item in enumerate(items):
            if isinstance(item, (tuple, list)):
                if template is None:
                    template = self._row((), None, now, where=where)
                try:
                    args_json = serialization.dumps_args(item, {}, max_bytes=max_bytes)[0]
                except SerializationError as exc:  # named here: no string is built per item that is fine
                    raise exc.within(f"{where}: item {index}") from None
                rows.append({**template, "id": None, "args": args_json})
            elif isinstance(item, Signature):
                at = f"{where}: item {index}"
                if item.name != self.name:
                    raise ValueError(f"{at} is a signature of {item.name!r}")
                rows.append(self._row(item.args, item.kwargs, now, where=at, **item.options))
            else:
                at = f"{where}: item {index}"
                raise TypeError(f"{at} must be a tuple of arguments or {self.name}.s(...), got {type(item).__name__}")
        plain = [row for row in rows if row["id"] is None]
        for row, job_id in zip(plain, uuid7_many(len(plain)), strict=True):
            row["id"] = job_id
        store = _django_store
        with guarded(where, djtasks_settings.DATABASE, atomic=True):
            for start in range(0, len(rows), BULK_BATCH_SIZE):
                store.job_insert_many(now=now, jobs=rows[start : start + BULK_BATCH_SIZE])
        for row in rows:
            signals.job_enqueued.send(sender=self, job_id=row["id"], queue=row["queue"], run_at=row["run_at"])
        return [JobResult(row["id"], name=self.name) for row in rows]

    def _row(
        self,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        now: datetime,
        *,
        where: str | None = None,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        job_id: uuid.UUID | str | None = None,
        time_limit: float | timedelta | None = None,
        soft_time_limit: float | timedelta | None = None,
    ) -> dict[str, Any]:
        """The checked row of one call; raises (naming ``where``) on anything the database would refuse."""
        where = where or f"{self.name}.apply_async"
        conf = djtasks_settings.get()  # read each call: override_settings may have changed the queues
        if (
            type(args) is not tuple
            and args is not None
            and (isinstance(args, (str, bytes, dict)) or not isinstance(args, Iterable))
        ):
            raise TypeError(f"{where}: args must be a list or tuple, got {type(args).__name__}")
        args_json, kwargs_json = serialization.dumps_args(
            tuple(args or ()), {} if kwargs is None else kwargs, max_bytes=conf.MAX_ARGS_BYTES, where=where
        )
        run_at = inputs.run_at(where, now, countdown=countdown, eta=eta)
        expires_at = inputs.expires_at(where, now, run_at, expires)
        if queue is not None and not isinstance(queue, str):
            raise TypeError(f"{where}: queue must be a string, got {queue!r:.80}")
        # Precedence: this call's queue, then DJTASKS["ROUTES"], then @job(queue=), then DEFAULT_QUEUE.
        queue = queue or conf.route(self.name) or self.queue or conf.DEFAULT_QUEUE
        known = conf.QUEUES
        if queue not in known:
            raise ValueError(
                f"{where}: unknown queue {queue!r:.120}; add it to DJTASKS['QUEUES'] (known: {', '.join(known)})"
            )
        priority = self.priority if priority is None else check_priority(where, priority)
        if job_id is None:
            job_id = uuid7()
        elif not isinstance(job_id, uuid.UUID):
            try:
                job_id = uuid.UUID(str(job_id))
            except ValueError:
                raise ValueError(f"{where}: job_id must be a UUID, got {job_id!r:.80}") from None
        if time_limit is None and soft_time_limit is None:
            hard, soft = self.time_limit, self.soft_time_limit  # checked when the job was declared
        else:
            hard, soft = check_time_limits(
                where,
                self.time_limit if time_limit is None else time_limit,
                self.soft_time_limit if soft_time_limit is None else soft_time_limit,
            )
        row = {
            "id": job_id,
            "name": self.name,
            "queue": queue,
            "priority": priority,
            "args": args_json,
            "kwargs": kwargs_json,
            "run_at": run_at,
            "expires_at": expires_at,
            "max_attempts": self.max_attempts,
            "time_limit": hard,
            "soft_time_limit": soft,
        }
        if tracing.TRACER is not None and (trace_context := tracing.carrier()) is not None:
            row["trace_context"] = trace_context  # the job's span will be a child of the current one
        return row

    # -- signatures -----------------------------------------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this job with arguments, to enqueue later or compose. Arguments the database cannot
        store raise ``SerializationError`` here, not when the signature is enqueued."""
        return Signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it does not receive the previous job's result."""
        return Signature(self.name, args, kwargs, immutable=True)


def job(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Register a function as a background job: ``@job`` or ``@job(queue=..., priority=..., ...)``.

    Options: ``name`` (default ``module.qualname``), ``queue`` (default ``DJTASKS['DEFAULT_QUEUE']``),
    ``priority`` (-100..100, higher runs first; default 0), ``max_attempts`` (default 1 = no retry),
    ``retry_backoff`` (``True`` for a 1 s base, or base seconds; exponential with jitter, capped at
    ``retry_backoff_max``, default 600 s), ``retry_delay`` (seconds before a retry when neither
    ``ctx.retry(countdown=)`` nor a backoff applies; default 10, 0 retries at once), ``retry_on`` (exception
    classes that retry while attempts remain; default any ``Exception``: ``max_attempts > 1`` is the opt-in),
    ``bind`` (pass a ``JobContext`` as first argument),
    ``time_limit`` (seconds; past it the supervisor kills the process running the job and records
    ``TimeLimitExceeded``), ``soft_time_limit`` (seconds, below ``time_limit``; raises
    ``SoftTimeLimitExceeded`` inside the job so it can clean up), ``unique`` (``.delay()`` inserts nothing
    while a job with the same name and arguments is queued or running, and returns that job's result),
    ``unique_for`` (seconds: finished jobs enqueued that recently count too; implies ``unique``),
    ``concurrency`` (at most this many of this job running at once across all workers, e.g. 1 for a report
    that must not overlap itself).
    A bad option raises ``TypeError`` or ``ImproperlyConfigured`` naming the job and the option.
    """

    def decorate(f: Callable[..., Any]) -> Job:
        j = Job(f, **options)
        registry.register(j)
        return j

    if func is not None:
        if options:
            raise TypeError("use @job or @job(option=...), not job(func, option=...)")
        if not callable(func):
            raise TypeError(f"@job expects a function, got {func!r}; options are passed by keyword: @job(queue=...)")
        return decorate(func)
    return decorate


from .results import JobResult  # noqa: E402 - results imports nothing from here at import time

# Enqueues go to Django's connection for DJTASKS["DATABASE"], looked up per statement (per thread).
_django_store = django_store()
