"""Settings for mypy's Django plugin (django-stubs): the installed apps, a PostgreSQL engine, no connection."""

from __future__ import annotations

SECRET_KEY = "typecheck-only"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "djtasks",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "typecheck"}}
USE_TZ = True
