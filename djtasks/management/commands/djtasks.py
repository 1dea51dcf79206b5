"""``manage.py djtasks <subcommand>``: operator commands. Each subcommand parses its arguments here and
delegates to a function elsewhere (``status`` → ``djtasks.dashboard``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


def status(command: BaseCommand, options: dict[str, Any]) -> None:
    """Per-queue counts, last hour's throughput and failures, and workers: what the admin's dashboard shows."""
    from djtasks.dashboard import format_text, summary

    data = summary()
    if options["json"]:
        command.stdout.write(json.dumps(data.as_dict(), indent=2))
    else:
        command.stdout.write(format_text(data), ending="")


SUBCOMMANDS: dict[str, Callable[[BaseCommand, dict[str, Any]], None]] = {
    "status": status,
}


class Command(BaseCommand):
    help = "djtasks operator commands: status."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        status_parser = subparsers.add_parser("status", help=status.__doc__)
        status_parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        SUBCOMMANDS[options["subcommand"]](self, options)
