from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from djtasks.beat import Beat
from djtasks.conf import djtasks_settings
from djtasks.worker.listener import announce
from djtasks.worker.logs import configure_logging


class Command(BaseCommand):
    help = (
        "Run the periodic scheduler: fire each due tick of djtasks_schedule exactly once. Safe to run on every "
        "host at once. SIGTERM/SIGINT: stop (exit 0)."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reload-interval",
            type=float,
            default=None,
            help="seconds between re-reads of the schedules (default: DJTASKS['POLL_INTERVAL']); "
            "admin saves are picked up at once anyway when LISTEN is on",
        )
        parser.add_argument("--loglevel", default="INFO", help="djtasks log level (default INFO)")

    def handle(self, *args: Any, **options: Any) -> None:
        reload_interval = options["reload_interval"] or djtasks_settings.POLL_INTERVAL
        if reload_interval <= 0:
            raise CommandError("--reload-interval must be positive")
        configure_logging(options["loglevel"])
        announce()
        beat = Beat(alias=djtasks_settings.DATABASE, listen=djtasks_settings.LISTEN, reload_interval=reload_interval)

        def on_signal(signum: int, frame: Any) -> None:
            beat.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        beat.run()
