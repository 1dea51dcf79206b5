from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from djtasks.conf import djtasks_settings
from djtasks.worker.async_executor import DEFAULT_ASYNC_CONCURRENCY
from djtasks.worker.listener import announce
from djtasks.worker.logs import configure_logging
from djtasks.worker.process import WorkerConfig
from djtasks.worker.supervisor import Supervisor

DEFAULT_THREADS = 4
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0


class Command(BaseCommand):
    help = (
        "Run djtasks worker processes under a supervisor. SIGTERM/SIGINT: warm shutdown (running jobs finish, "
        "up to --shutdown-timeout); a second signal or SIGQUIT: cold shutdown (running jobs go back to the queue)."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)"
        )
        parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="job threads per process (default 4)")
        parser.add_argument(
            "--queues", default="", help="comma-separated queues to serve (default: all in DJTASKS['QUEUES'])"
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=DEFAULT_SHUTDOWN_TIMEOUT_S,
            help="seconds running jobs get to finish on SIGTERM before they are released (default 30)",
        )
        parser.add_argument(
            "--beat",
            action="store_true",
            help="also run the periodic scheduler (like runbeat) in the supervisor; safe on every host",
        )
        parser.add_argument(
            "--max-jobs-per-child",
            type=int,
            default=None,
            help="replace a worker process after it ran this many jobs (its jobs finish first; none is lost)",
        )
        parser.add_argument(
            "--max-memory-per-child",
            type=float,
            default=None,
            metavar="MB",
            help="replace a worker process once its resident memory exceeds this many MB (checked after each job)",
        )
        parser.add_argument(
            "--async-concurrency",
            type=int,
            default=DEFAULT_ASYNC_CONCURRENCY,
            help=f"async def jobs run at once per process, on its event loop (default {DEFAULT_ASYNC_CONCURRENCY})",
        )
        parser.add_argument("--loglevel", default="INFO", help="djtasks log level (default INFO)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["processes"] < 1 or options["threads"] < 1:
            raise CommandError("--processes and --threads must be at least 1")
        if options["async_concurrency"] < 1:
            raise CommandError("--async-concurrency must be at least 1")
        if options["shutdown_timeout"] < 0:
            raise CommandError("--shutdown-timeout must not be negative")
        if options["max_jobs_per_child"] is not None and options["max_jobs_per_child"] < 1:
            raise CommandError("--max-jobs-per-child must be at least 1")
        if options["max_memory_per_child"] is not None and options["max_memory_per_child"] <= 0:
            raise CommandError("--max-memory-per-child must be a positive number of MB")
        known = djtasks_settings.QUEUES
        queues = tuple(q.strip() for q in options["queues"].split(",") if q.strip()) or tuple(known)
        unknown = [q for q in queues if q not in known]
        if unknown:
            raise CommandError(f"unknown queue(s) {', '.join(unknown)}; DJTASKS['QUEUES'] has {', '.join(known)}")
        configure_logging(options["loglevel"])
        announce(probe=False)  # the supervisor's maintenance thread probes, after the fork server is made
        config = WorkerConfig(
            queues=queues,
            threads=options["threads"],
            shutdown_timeout=options["shutdown_timeout"],
            poll_interval=djtasks_settings.POLL_INTERVAL,
            listen=djtasks_settings.LISTEN,
            heartbeat_interval=djtasks_settings.HEARTBEAT_INTERVAL,
            alias=djtasks_settings.DATABASE,
            log_level=options["loglevel"],
            max_jobs_per_child=options["max_jobs_per_child"],
            max_memory_per_child=options["max_memory_per_child"],
            async_concurrency=options["async_concurrency"],
        )
        sys.exit(Supervisor(config, options["processes"], beat=options["beat"]).run())
