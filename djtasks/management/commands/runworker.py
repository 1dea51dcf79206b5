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
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help="serve Prometheus metrics (this runworker's processes, and the database gauges) on this port; "
            "needs djtasks[metrics]",
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",
            metavar="ADDRESS",
            help="address the metrics port listens on (default 0.0.0.0: every interface)",
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
        port = options["metrics_port"]
        if port is not None and not 1 <= port <= 65535:
            raise CommandError(f"--metrics-port {port}: a port number is 1 to 65535")
        configure_logging(options["loglevel"])
        announce(probe=False)  # the supervisor's maintenance thread probes, after the fork server is made
        # Tried before anything starts: a port in use stops runworker here. The supervisor binds it for good.
        metrics = serve_metrics(port, options["metrics_address"]) if port is not None else None
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
            metrics=metrics is not None,
        )
        sys.exit(Supervisor(config, options["processes"], beat=options["beat"], metrics=metrics).run())


def serve_metrics(port: int, address: str) -> Any:
    """A ``MetricsServer`` whose port was just found free (the supervisor starts it); a ``CommandError`` naming
    the option if it is not, or if ``prometheus_client`` is missing."""
    try:
        from djtasks.metrics.server import MetricsPortError, MetricsServer
    except ImportError as exc:
        raise CommandError(
            f"--metrics-port needs prometheus_client ({exc}); install it with: pip install 'djtasks[metrics]'"
        ) from None
    try:
        MetricsServer.check(port, address)
    except MetricsPortError as exc:
        raise CommandError(
            f"--metrics-port {port}: cannot listen on {address}:{port} ({exc.strerror}); choose a free port "
            "(or stop what listens there), or check --metrics-address"
        ) from None
    return MetricsServer(port, address)
