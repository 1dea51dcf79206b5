"""The models need nothing beyond djtasks in INSTALLED_APPS: no system check fires on the test settings, which,
like a typical site, do not install ``django.contrib.postgres`` (Django 6.1 requires it for ``ArrayField``)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import run_checks


def test_no_check_fires_without_django_contrib_postgres():
    assert "django.contrib.postgres" not in settings.INSTALLED_APPS
    assert [f"{e.id}: {e.msg}" for e in run_checks() if e.is_serious()] == []
