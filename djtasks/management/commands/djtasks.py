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
    "cancel": (
        "cancel jobs: queued ones never run; running ones are asked to stop (ctx.is_cancelled()) or, with "
        "--terminate, killed",
        add_cancel_arguments,
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
