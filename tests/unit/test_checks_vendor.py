"""djtasks.E003 judges the database by the backend's vendor, so PostGIS and wrapping backends pass."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests.conftest import ROOT


def djtasks_errors(engine: str) -> list:
    databases = {"default": {"ENGINE": engine, "NAME": "djtasks"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Overriding DATABASES": no query runs here
        with override_settings(DATABASES=databases):
            return [e for e in run_checks() if e.id.startswith("djtasks")]


def test_a_backend_wrapping_postgresql_passes():
    assert djtasks_errors("tests.wrapped_backend") == []


def test_postgis_passes():
    pytest.importorskip("django.contrib.gis.gdal", reason="PostGIS's backend needs the GDAL library")
    assert djtasks_errors("django.contrib.gis.db.backends.postgis") == []


def test_sqlite_is_rejected_naming_its_vendor():
    errors = djtasks_errors("django.db.backends.sqlite3")
    assert [e.id for e in errors] == ["djtasks.E003"]
    assert "'sqlite'" in errors[0].msg


def test_an_engine_that_cannot_be_loaded_is_e003_not_a_crash():
    errors = djtasks_errors("no.such.backend")
    assert [e.id for e in errors] == ["djtasks.E003"]
    assert "cannot be loaded" in errors[0].msg


def test_a_postgis_settings_module_passes_manage_py_check():
    """The whole ``manage.py check`` with ENGINE = PostGIS, in its own process (no server is contacted)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--settings", "tests.settings_postgis"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout
