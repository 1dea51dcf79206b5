"""Fixtures for the browser tests: the example site under gunicorn, runworker, and headless Chromium.

Everything runs as the real thing against the test database: gunicorn serves ``example_site`` (its settings, its
URLs, its jobs) in a subprocess on a free port of 127.0.0.1, ``runworker`` runs the example site's jobs, and
Debian's ``chromium`` is driven by Playwright (never ``playwright install``: no browser download is needed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import ROOT, subprocess_env

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def site_env() -> dict[str, str]:
    """The example site's settings, on the test database."""
    return {
        **subprocess_env(),
        "DJANGO_SETTINGS_MODULE": "example_site.settings",
        "SECRET_KEY": "browser-tests-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "False",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A subprocess in its own session whose output goes to a log file, shown when the test ends."""

    def __init__(self, name: str, cmd: list[str], tmp_path: Path) -> None:
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=site_env(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        sys.stderr.write(f"--- {self.name} log (last 3000 chars)\n{self.log_path.read_text()[-3000:]}\n")


@pytest.fixture
def children(tmp_path: Path) -> Iterator[dict[str, Child]]:
    started: dict[str, Child] = {}
    yield started
    for child in started.values():
        child.stop()


@pytest.fixture
def live_site(children: dict[str, Child], tmp_path: Path) -> str:
    """The example site under gunicorn; returns its base URL once it answers."""
    port = free_port()
    children["gunicorn"] = Child(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "example_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ],
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if children["gunicorn"].proc.poll() is not None:
            pytest.fail(f"gunicorn exited: {children['gunicorn'].log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/admin/login/", timeout=5) as response:
                if response.status == 200:
                    return url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail("gunicorn did not answer in time")


@pytest.fixture
def start_site_worker(children: dict[str, Child], tmp_path: Path):
    """Start ``runworker`` with the example site's settings (so it runs the example site's jobs)."""

    def start(*args: str) -> Child:
        child = Child("runworker", [sys.executable, str(ROOT / "manage.py"), "runworker", *args], tmp_path)
        children["runworker"] = child
        return child

    return start


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A Playwright page in headless Debian Chromium."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls in between are still plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
            # ORM calls made while Playwright's loop is current get their own connection (Django keys
            # connections by context there); close it, or the test database cannot be dropped at the end.
            connections.close_all()
