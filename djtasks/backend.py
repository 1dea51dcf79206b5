"""A backend for Django's own tasks framework (``django.tasks``, Django 6+), on djtasks' tables and workers.

    TASKS = {"default": {"BACKEND": "djtasks.backend.DatabaseBackend", "QUEUES": ["default", "emails"]}}

A ``@task`` enqueues a djtasks job named by the task's module path (``myapp.tasks.send_email``), through the
same INSERT as ``.delay()``, on Django's connection: inside ``transaction.atomic()`` it exists exactly when
the transaction commits. ``TaskResult.id`` is the job id, so ``djtasks.JobResult(id)``, the admin and
``manage.py djtasks`` find it. ``manage.py runworker`` runs ``@task`` and ``@job`` functions side by side.

Which task a worker runs: a task registers itself (as a job named by its module path) when it is defined,
so every task in an installed app's ``tasks.py`` is known once the worker has started (autodiscovery). A job
whose name is not registered yet is imported on demand only when its module is inside an installed app's
package and the name resolves to a ``django.tasks.Task`` of a djtasks backend; anything else fails the job
with a message saying what to fix, and the worker carries on.

Backend options beyond Django's (``@task(max_attempts=3, retry_backoff=True, time_limit=60)``) reach
``DjtasksTask`` through the ``@task`` decorator on Django 6.1; Django 6.0's decorator takes no extra
keyword, so there ``djtasks.backend.task(...)`` is the decorator that takes them.

Importing this module on Django < 6 raises ``ImportError`` saying so; the rest of djtasks does not need it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import django
from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

try:
    from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskResult
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import DEFAULT_TASK_PRIORITY, TaskError, TaskResultStatus
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError as exc:  # Django < 6.0
    raise ImportError(
        f"djtasks.backend.DatabaseBackend needs Django 6.0 or later (django.tasks); this is Django "
        f"{django.get_version()}. Use djtasks' own @job API, or upgrade Django to use @task."
    ) from exc

from . import serialization
from .conf import djtasks_settings
from .cursors import django_store
from .exceptions import NotRegistered
from .jobs import DEFAULT_RETRY_BACKOFF_MAX_S, DEFAULT_RETRY_DELAY_S, Job
from .registry import registry
from .status import JobStatus, shown_status

STATUSES = {
    JobStatus.WAITING: TaskResultStatus.READY,  # a workflow step whose input is not ready: not started either
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}
TASK_OPTIONS = (
    "max_attempts",
    "retry_backoff",
    "retry_backoff_max",
    "retry_delay",
    "time_limit",
    "soft_time_limit",
    "unique",
    "unique_for",
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DjtasksTask(Task):  # type: ignore[type-arg]  # generic only in django-stubs
    """The task class of ``DatabaseBackend``: Django's ``Task`` with djtasks' options.

    ``max_attempts`` (default 1 = no retry), ``retry_backoff`` (``True`` for a 1 s base, or base seconds;
    exponential with jitter), ``retry_backoff_max`` (seconds, default 600), ``retry_delay`` (seconds before a
    retry without a backoff, default 10), ``time_limit`` (seconds; past it
    the worker process running the task is killed) and ``soft_time_limit`` (seconds, below ``time_limit``;
    ``SoftTimeLimitExceeded`` is raised in the task, or an async task is cancelled), ``unique`` (while a job of
    this task with the same arguments is queued or running, ``enqueue`` inserts nothing and returns that job's
    result) and ``unique_for`` (seconds: finished ones enqueued that recently count too). Same meaning as
    ``@job``'s.
    """

    max_attempts: int = 1
    retry_backoff: bool | float = False
    retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX_S
    retry_delay: float | timedelta = DEFAULT_RETRY_DELAY_S
    time_limit: float | timedelta | None = None
    soft_time_limit: float | timedelta | None = None
    unique: bool | None = None  # None: unique when unique_for is given, as for @job
    unique_for: float | timedelta | None = None


def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **options: Any,
) -> Any:
    """``django.tasks.task`` that also takes djtasks' options on Django 6.0 (``max_attempts``, ...); on
    Django 6.1 ``@django.tasks.task(max_attempts=...)`` does the same."""
    unknown = set(options) - set(TASK_OPTIONS)
    if unknown:
        raise TypeError(
            f"@task: unknown option(s) {', '.join(sorted(unknown))}; djtasks adds {', '.join(TASK_OPTIONS)}"
        )

    def wrapper(f: Callable[..., Any]) -> DjtasksTask:
        return DjtasksTask(
            func=f, priority=priority, queue_name=queue_name, backend=backend, takes_context=takes_context, **options
        )

    return wrapper(function) if function is not None else wrapper


def _task_options(task: Task[Any, Any]) -> dict[str, Any]:
    # An option left at None is left out, so the job takes @job's default for it.
    return {name: getattr(task, name) for name in TASK_OPTIONS if getattr(task, name, None) is not None}


def _errors(row: dict[str, Any]) -> list[dict[str, Any]]:
    return serialization.loads(row["errors"]) or []


def worker_ids(attempt: int, worker_id: Any, errors: list[dict[str, Any]]) -> list[str]:
    """One worker id per attempt started: each failed attempt's from its error entry, the last one's from the
    row (the worker that runs, or ran, it); ``""`` where no record says (an attempt before djtasks kept it)."""
    by_attempt = {e["attempt"]: e["worker_id"] for e in errors if e.get("worker_id") and "attempt" in e}
    if worker_id is not None:
        by_attempt.setdefault(attempt, str(worker_id))
    return [by_attempt.get(n, "") for n in range(1, attempt + 1)]


def task_errors(errors: list[dict[str, Any]]) -> list[TaskError]:
    return [
        TaskError(
            exception_class_path=e["type"],
            # djtasks' own failures (worker lost, expired, cancelled) have no traceback: their message says why
            traceback=e.get("traceback") or f"{e['type']}: {e.get('message', '')}\n",
        )
        for e in errors
    ]


class TaskJob(Job):
    """The djtasks job behind a ``django.tasks`` task: named by the task's module path, run by the worker with
    the task's context and Django's ``task_started`` / ``task_finished`` signals."""

    def __init__(self, task: Task[Any, Any], backend: DatabaseBackend) -> None:
        options = _task_options(task)
        super().__init__(task.func, name=task.module_path, queue=task.queue_name, priority=task.priority, **options)
        self.task = task
        self.options = options
        self.backend_class = type(backend)
        self.hooks = self

    def encode_result(self, value: Any) -> str:
        # Django's rule for return values: what normalize_json accepts (TypeError otherwise), as JSON.
        return serialization.dumps(normalize_json(value), "result")

    def result(self, row: dict[str, Any], **fields: Any) -> TaskResult[Any, Any]:
        """A ``TaskResult`` for the job ``row`` (``fields`` override what the row says)."""
        errors = fields.pop("raw_errors", None)
        if errors is None:
            errors = _errors(row)
        status = shown_status(row["status"], row.get("started_at"))  # claimed ahead, not started: READY
        run_at, enqueued_at = row.get("run_at"), row.get("enqueued_at")
        deferred = run_at is not None and enqueued_at is not None and run_at > enqueued_at
        task = self.task
        if task.priority != row["priority"] or task.queue_name != row["queue"] or deferred or task.run_after:
            task = dataclasses.replace(
                task, priority=row["priority"], queue_name=row["queue"], run_after=run_at if deferred else None
            )
        values: dict[str, Any] = {
            "task": task,
            "id": str(row["id"]),
            "status": STATUSES[status],
            "enqueued_at": enqueued_at,
            "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"),
            "last_attempted_at": row.get("started_at"),
            "args": serialization.loads(row["args"]) if isinstance(row["args"], str) else row["args"],
            "kwargs": serialization.loads(row["kwargs"]) if isinstance(row["kwargs"], str) else row["kwargs"],
            "backend": self.task.backend,
            "errors": task_errors(errors),
            "worker_ids": worker_ids(row["attempt"], row.get("worker_id"), errors),
        }
        values.update(fields)
        return_value = values.pop("return_value", None)
        result: TaskResult[Any, Any] = TaskResult(**values)
        if result.status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", return_value)
        return result

    # -- worker hooks (djtasks.worker.executor) -------------------------------------------------------
    def started(
        self, row: dict[str, Any], args: list[Any], kwargs: dict[str, Any], worker_id: uuid.UUID | None
    ) -> tuple[TaskContext[Any, Any] | None, TaskResult[Any, Any]]:
        errors: list[dict[str, Any]] = []
        if row["attempt"] > 1:  # earlier attempts' errors and workers: one read, only for a retried task
            stored = django_store().job_get(row["id"])
            errors = _errors(stored) if stored is not None else []
        now = timezone.now()
        current = {**row, "status": JobStatus.RUNNING, "started_at": now, "worker_id": worker_id, "args": args}
        result = self.result({**current, "kwargs": kwargs}, raw_errors=errors)
        task_started.send_robust(sender=self.backend_class, task_result=result)
        return (TaskContext(task_result=result) if self.task.takes_context else None), result

    def finished(self, row: dict[str, Any], state: TaskResult[Any, Any], outcome: dict[str, Any]) -> None:
        status = JobStatus(outcome["status"])
        if not status.is_final:
            return  # a retry: the task has not finished
        # The result the task's context holds is brought up to date in place, as Django's own backends do.
        if outcome["error"] is not None:
            state.errors.extend(task_errors([serialization.loads(outcome["error"])]))
        object.__setattr__(state, "status", STATUSES[status])
        object.__setattr__(state, "finished_at", outcome["finished_at"])
        if status == JobStatus.SUCCEEDED:
            object.__setattr__(state, "_return_value", serialization.loads(outcome["result"]))
        task_finished.send_robust(sender=self.backend_class, task_result=state)


def _same_task(job: Any, task: Task[Any, Any]) -> bool:
    return isinstance(job, TaskJob) and job.func is task.func and job.options == _task_options(task)


class DatabaseBackend(BaseTaskBackend):
    """``django.tasks`` backend storing tasks as djtasks jobs. ``QUEUES`` (optional) limits the queues tasks
    may use; each must be in ``DJTASKS['QUEUES']``. Without it, every djtasks queue is allowed."""

    task_class = DjtasksTask
    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Django's default is {"default"}; here no QUEUES means "the queues djtasks knows", checked at enqueue.
        self.queues = set(params["QUEUES"]) if "QUEUES" in params else set()

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        self.job_for(task)

    def job_for(self, task: Task[Any, Any]) -> TaskJob:
        """The registered job of ``task``, registering it (and checking its djtasks options) if needed."""
        existing = registry.find(task.module_path)
        if _same_task(existing, task):
            return existing  # type: ignore[return-value]
        try:
            job = TaskJob(task, self)
        except (TypeError, ValueError, ImproperlyConfigured) as exc:
            raise InvalidTask(str(exc).replace("@job", "@task", 1)) from exc
        if existing is not None and not isinstance(existing, TaskJob):
            raise InvalidTask(f"{task.module_path!r} is already the name of a @job; a task cannot share it")
        registry.register(job)
        return job

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any, Any]:
        """Insert the task's job in the caller's transaction; the result is READY, built from what was
        inserted (a worker may already have claimed the job by the time this returns)."""
        self.validate_task(task)
        job = self.job_for(task)
        module = task.func.__module__
        if not _in_installed_app(module):
            raise InvalidTask(
                f"Task {task.module_path!r} is defined in {module!r}, which is not in an installed app: a worker "
                "imports tasks only from installed apps. Move it into one (e.g. myapp/tasks.py)."
            )
        known = djtasks_settings.QUEUES
        if task.queue_name not in known:
            raise InvalidTask(
                f"Queue {task.queue_name!r} is not in DJTASKS['QUEUES'] ({', '.join(known)}); add it there so "
                "workers serve it"
            )
        args, kwargs = normalize_json(args), normalize_json(kwargs)  # Django's rules: TypeError if not JSON
        now = timezone.now()
        row = job._row(
            args,
            kwargs,
            now,
            where=f"{job.name}.enqueue",
            eta=task.run_after,
            queue=task.queue_name,
            priority=task.priority,
        )
        job_id, inserted = job._store_row(row, now, where=f"{job.name}.enqueue")
        if not inserted:  # a unique task's duplicate: the job that stands for this call, as it is now
            return self.get_result(str(job_id))
        result = job.result(
            {**row, "status": JobStatus.QUEUED, "enqueued_at": now, "attempt": 0, "errors": "[]"},
            args=args,
            kwargs=kwargs,
            task=task,
        )
        task_enqueued.send(sender=type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The task's result read from its row; ``TaskResultDoesNotExist`` for an unknown id (or a @job's)."""
        try:
            job_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = django_store().job_get(job_id)
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            job = resolve_job(row["name"], registered=registry.find(row["name"]))
        except NotRegistered as exc:
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        return job.result(row, return_value=serialization.loads(row["result"]))

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        try:
            known = djtasks_settings.QUEUES
        except ImproperlyConfigured:
            return []  # djtasks' own check reports the setting
        return [
            checks.Error(
                f"TASKS[{self.alias!r}]['QUEUES'] has {queue!r}, which is not in DJTASKS['QUEUES']",
                hint=f"add {queue!r} to DJTASKS['QUEUES'] (workers serve only those), or use one of: {', '.join(known)}",
                id="djtasks.E008",
            )
            for queue in sorted(self.queues - set(known))
        ]


def _in_installed_app(module: str) -> bool:
    return any(module == app.name or module.startswith(app.name + ".") for app in apps.get_app_configs())


def resolve_job(name: str, registered: Job | None = None) -> TaskJob:
    """The ``TaskJob`` named ``name``, importing its task if it is not registered yet; ``NotRegistered``
    saying what to fix when ``name`` is not a task of a djtasks backend in an installed app."""
    if isinstance(registered, TaskJob):
        return registered
    if registered is not None:
        raise NotRegistered(name, f"{name!r} is a @job, not a django.tasks task; read it with djtasks.JobResult")
    unknown = f"no @job or @task named {name!r} is registered"
    module = name.rpartition(".")[0]
    if not module or not _in_installed_app(module):
        raise NotRegistered(
            name,
            f"{unknown}, and {module or name!r} is not in an installed app, so the worker does not import it; "
            "define it in an installed app (its tasks.py is imported when the worker starts)",
        )
    try:
        found = import_string(name)
    except ImportError as exc:
        raise NotRegistered(
            name,
            f"{unknown}, and it cannot be imported by the worker ({type(exc).__name__}: {exc}); does the worker "
            "run the same code as the site that enqueued it (renamed or removed since)?",
        ) from None
    if not isinstance(found, Task) or found.module_path != name:
        raise NotRegistered(name, f"{unknown}; {name!r} is neither a django.tasks task (@task) nor a @job")
    backend = found.get_backend()
    if not isinstance(backend, DatabaseBackend):
        raise NotRegistered(
            name, f"task {name!r} uses backend {type(backend).__name__}, not djtasks.backend.DatabaseBackend"
        )
    return backend.job_for(found)
