"""``manage.py djtasks <subcommand>``: operator commands. Each subcommand adds its arguments and delegates to
a function (``djtasks.operations``, ``djtasks.dashboard``); this module only parses and prints.

To add one: write ``add_<name>_arguments(parser)`` and ``Command.handle_<name>(self, **options)``, and list
the name in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import json as _json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djtasks import operations


def add_cancel_arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", nargs="+", metavar="ID", help="job ids")
    parser.add_argument(
        "--terminate",
        action="store_true",
        help="kill the worker process running each running job instead of asking the job to stop "
        "(its other jobs go back to the queue)",
    )


def add_status_arguments(parser: CommandParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_prune_arguments(parser: CommandParser) -> None:
    """``prune`` takes no arguments: the TTLs come from the DJTASKS settings."""


def add_pause_arguments(parser: CommandParser) -> None:
    parser.add_argument("queue", help="a queue of DJTASKS['QUEUES']")


def add_queue_arguments(parser: CommandParser) -> None:
    parser.add_argument("queue", nargs="?", help="the queue to change (without one: list every queue's options)")
    parser.add_argument("--concurrency", metavar="N", help="at most N running at once, fleet-wide; 'none': no limit")
    parser.add_argument("--rate-limit", metavar="RATE", help="e.g. 100/m, 10/s, 500/h; 'none': no limit")
    parser.add_argument(
        "--reset",
        nargs="*",
        metavar="OPTION",
        help="hand options (concurrency, rate_limit, paused; all without a name) back to DJTASKS['QUEUES']",
    )


def add_purge_arguments(parser: CommandParser) -> None:
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose waiting jobs are deleted")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def add_jobs_arguments(parser: CommandParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


# name -> (help, function adding its arguments)
SUBCOMMANDS = {
    "prune": (
        "delete finished jobs older than RESULT_TTL (failed ones: FAILED_RESULT_TTL), in small batches",
        add_prune_arguments,
    ),
    "status": (
        "per-queue counts, last hour's throughput and failures, and workers: what the admin's dashboard shows",
        add_status_arguments,
    ),
    "pause": ("pause a queue across all workers: nothing of it starts; running jobs finish", add_pause_arguments),
    "resume": ("resume a paused queue", add_pause_arguments),
    "queue": (
        "show queues' run-time options, or change one queue's limits (they override DJTASKS['QUEUES'] until reset)",
        add_queue_arguments,
    ),
    "cancel": (
        "cancel jobs: queued ones never run; running ones are asked to stop (ctx.is_cancelled()) or, with "
        "--terminate, killed",
        add_cancel_arguments,
    ),
    "purge": (
        "delete every waiting (queued or scheduled) job of one queue; running and finished jobs stay",
        add_purge_arguments,
    ),
    "jobs": (
        "registered jobs with their queue, attempts and retry policy, time limits and schedules",
        add_jobs_arguments,
    ),
}


class Command(BaseCommand):
    help = "djtasks operator commands: " + ", ".join(SUBCOMMANDS)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for name, (help_text, add) in SUBCOMMANDS.items():
            add(sub.add_parser(name, help=help_text, description=help_text))

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"handle_{options['subcommand']}")(**options)

    def handle_status(self, *, json: bool, **options: Any) -> None:
        from djtasks.dashboard import format_text, summary

        data = summary()
        if json:
            self.stdout.write(_json.dumps(data.as_dict(), indent=2))
        else:
            self.stdout.write(format_text(data), ending="")

    def handle_prune(self, **options: Any) -> None:
        from django.utils import timezone

        from djtasks.cursors import django_store
        from djtasks.maintenance.pruner import prune_all

        result = prune_all(timezone.now(), django_store())
        self.stdout.write(f"deleted {result.succeeded} succeeded/cancelled and {result.failed} failed job(s)")

    def handle_cancel(self, *, ids: list[str], terminate: bool, **options: Any) -> None:
        try:
            job_ids = [uuid.UUID(i) for i in ids]
        except ValueError as exc:
            raise CommandError(f"not a job id: {exc}") from None
        changed = operations.cancel_jobs(job_ids, terminate=terminate)
        for job_id in job_ids:
            status = changed.get(job_id)
            if status == "cancelled":
                self.stdout.write(f"{job_id} cancelled")
            elif status == "running":
                how = "its worker process will be killed" if terminate else "asked to stop"
                self.stdout.write(f"{job_id} running: cancel requested, {how}")
            else:
                self.stdout.write(f"{job_id} not cancelled: no such job, or already finished")
        if not changed:
            raise CommandError("no job was cancelled")

    def _queue_change(self, queue: str, **changes: Any) -> Any:
        from djtasks.queues import QueueOptionError, set_queue_options

        try:
            return set_queue_options(queue, **changes)
        except QueueOptionError as exc:
            raise CommandError(str(exc)) from None

    def handle_pause(self, *, queue: str, **options: Any) -> None:
        self._queue_change(queue, paused=True)
        self.stdout.write(f"queue {queue} paused: no job of it starts until 'manage.py djtasks resume {queue}'")

    def handle_resume(self, *, queue: str, **options: Any) -> None:
        self._queue_change(queue, paused=False)
        self.stdout.write(f"queue {queue} resumed")

    def handle_queue(
        self,
        *,
        queue: str | None,
        concurrency: str | None,
        rate_limit: str | None,
        reset: list[str] | None,
        **options: Any,
    ) -> None:
        from djtasks.dashboard import format_limits
        from djtasks.queues import flow_state

        changes: dict[str, Any] = {}
        if concurrency is not None:
            changes["concurrency"] = concurrency
        if rate_limit is not None:
            changes["rate_limit"] = rate_limit
        if reset is not None:
            changes["reset"] = reset or "all"
        if queue is None:
            if changes:
                raise CommandError("name the queue to change: manage.py djtasks queue QUEUE --concurrency N")
            state = flow_state()
            for queue_state in state.queues.values():
                self.stdout.write(format_limits(queue_state))
            for limit in state.jobs:
                self.stdout.write(f"job {limit.name}: concurrency={limit.concurrency} (@job(concurrency=...))")
            return
        self.stdout.write(format_limits(self._queue_change(queue, **changes)))

    def handle_purge(self, *, queue: str, yes: bool, **options: Any) -> None:
        from djtasks.conf import djtasks_settings

        waiting = operations.waiting_jobs(queue)
        if queue not in djtasks_settings.QUEUES and not waiting:
            raise CommandError(f"unknown queue {queue!r}; known: {', '.join(djtasks_settings.QUEUES)}")
        if not yes:
            try:
                answer = input(f"Delete {waiting} waiting job(s) from queue {queue!r}? Type 'yes' to continue: ")
            except EOFError:  # no terminal to answer from (cron, CI): say how to go on
                raise CommandError(f"{waiting} waiting job(s) in queue {queue!r}; pass --yes to delete them") from None
            if answer.strip().lower() != "yes":
                raise CommandError("purge cancelled; nothing was deleted")
        try:
            deleted = operations.purge_queue(queue)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"deleted {deleted} waiting job(s) from queue {queue!r}")

    def handle_jobs(self, *, json: bool, **options: Any) -> None:
        from djtasks.catalog import format_catalog, job_catalog

        infos = job_catalog()
        if json:
            self.stdout.write(_json.dumps([info.as_dict() for info in infos], indent=2))
        else:
            self.stdout.write(format_catalog(infos), ending="")
