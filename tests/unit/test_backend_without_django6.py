"""On Django 5.2 (no ``django.tasks``) djtasks works as before; its ``django.tasks`` backend says it needs 6."""

from __future__ import annotations

import importlib

import django
import pytest
from django.test import override_settings

pytestmark = pytest.mark.skipif(django.VERSION >= (6, 0), reason="Django 6 has django.tasks; the backend imports")


def test_importing_the_backend_says_it_needs_django_6():
    with pytest.raises(ImportError, match=r"needs Django 6\.0 or later \(django\.tasks\); this is Django 5"):
        importlib.import_module("djtasks.backend")


def test_a_tasks_setting_naming_the_backend_is_a_warning():
    from djtasks.checks import check_tasks_backend

    with override_settings(TASKS={"default": {"BACKEND": "djtasks.backend.DatabaseBackend"}}):
        (warning,) = check_tasks_backend()
    assert warning.id == "djtasks.W001" and "ignored" in warning.msg
    with override_settings(TASKS={}):
        assert check_tasks_backend() == []
