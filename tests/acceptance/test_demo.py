"""README command 1: ``manage.py demo`` serves the site under gunicorn with a worker that runs its jobs."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from tests.conftest import ROOT, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_command_serves_the_page_and_runs_jobs(tmp_path):
    port = free_port()
    env = {**subprocess_env(), "DJANGO_SETTINGS_MODULE": "example_site.settings", "SECRET_KEY": "demo-test"}
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "demo",
            "--bind",
            f"127.0.0.1:{port}",
            "--processes",
            "1",
            "--threads",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = opener.open(base + "/", timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
                time.sleep(0.3)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "job": "add", "a": 20, "b": 22, "seconds": 0, "countdown": 0}
        ).encode()
        response = opener.open(urllib.request.Request(base + "/", data=form, headers={"Referer": base + "/"}))
        job_url = response.geturl()
        assert "/jobs/" in job_url
        deadline = time.monotonic() + 30
        while '<code id="result">42</code>' not in (body := opener.open(job_url).read().decode()):
            assert time.monotonic() < deadline, body
            time.sleep(0.3)
        admin = opener.open(base + "/admin/login/").read().decode()
        assert "Django administration" in admin
        assert opener.open(base + "/static/admin/css/base.css").status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "demo.log").read_text()
        log.close()
