"""A private PgBouncer in front of a local cluster (``localpg``), for the tests. Development only.

It listens on 127.0.0.1 on a free port (found by binding port 0 and releasing it; if another process takes
the port before PgBouncer binds it, a new one is tried) and reaches the server through the cluster's unix
socket. Clients authenticate with ``auth_type = trust`` against a userlist naming the server's superuser, as
the cluster itself trusts its socket. Every database name is routed to the cluster (``* = ...``).

PgBouncer refuses to run as root: as root it runs as the cluster's server user, like ``pg_ctl``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .localpg import SERVER_USER, server_os_user

BINARY_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install -y pgbouncer; .ci/run does it)"
START_TIMEOUT_S = 15.0
PORT_TRIES = 5
POOL_SIZE = 20  # server connections per (database, user): several runworkers share fewer than they would hold


class PgBouncerError(RuntimeError):
    """PgBouncer is missing or would not start."""


def find_pgbouncer() -> str:
    """The ``pgbouncer`` binary; ``PgBouncerError`` (saying how to install it) when there is none."""
    found = shutil.which("pgbouncer") or next((p for p in BINARY_CANDIDATES if os.path.exists(p)), None)
    if found is None:
        raise PgBouncerError(f"pgbouncer not found: {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One PgBouncer process in ``pool_mode`` (``transaction`` or ``session``) in front of the server whose
    socket is in ``socket_dir``; ``start()``, ``url(dbname)``, ``stop()``."""

    def __init__(self, socket_dir: str, *, pool_mode: str, server_port: int = 5432, pool_size: int = POOL_SIZE) -> None:
        self.socket_dir = socket_dir
        self.pool_mode = pool_mode
        self.server_port = server_port
        self.pool_size = pool_size
        self.workdir = Path(tempfile.mkdtemp(prefix=f"djtasks-pgb-{pool_mode}-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "pgbouncer.log"

    def url(self, dbname: str) -> str:
        """A ``DATABASE_URL`` for django-environ reaching ``dbname`` through this PgBouncer."""
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SERVER_USER} dbname={dbname}"

    def _write_config(self) -> Path:
        (self.workdir / "userlist.txt").write_text(f'"{SERVER_USER}" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={self.socket_dir} port={self.server_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.workdir / 'userlist.txt'}",
                    f"admin_users = {SERVER_USER}",
                    f"pool_mode = {self.pool_mode}",
                    f"default_pool_size = {self.pool_size}",
                    "max_client_conn = 500",
                    # Django's psycopg backend may send it; PgBouncer refuses unknown startup parameters.
                    "ignore_startup_parameters = extra_float_digits",
                    f"logfile = {self.log_path}",
                    f"pidfile = {self.workdir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        return ini

    def start(self) -> None:
        binary = find_pgbouncer()
        kwargs: dict = {}
        owner = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(server_os_user())
            owner = (entry.pw_uid, entry.pw_gid)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid)
            os.chmod(self.workdir, 0o755)
        for _ in range(PORT_TRIES):
            self.port = free_port()
            ini = self._write_config()
            if owner is not None:  # it writes its log and pid file here
                for path in [self.workdir, *self.workdir.iterdir()]:
                    os.chown(path, *owner)
            self.proc = subprocess.Popen(
                [binary, str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd="/", **kwargs
            )
            if self._wait_ready():
                return
            self.stop()
        raise PgBouncerError(f"pgbouncer would not start; its log:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False  # e.g. the port was taken meanwhile: try another
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
