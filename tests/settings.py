"""Settings for the test suite. Without DATABASE_URL, a throwaway PostgreSQL cluster is started from the
local server binaries for this test run (and removed at exit); worker subprocesses inherit its URL."""

from __future__ import annotations

import os

import django
import environ

if not os.environ.get("DATABASE_URL"):
    from devtools.localpg import throwaway_cluster

    throwaway_cluster("djtasks")

env = environ.Env()
DATABASES = {"default": env.db("DATABASE_URL")}
SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djtasks",
    "example_site.demo",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "example_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if django.VERSION >= (6, 0):  # django.tasks on djtasks' backend (ignored by Django 5.2, which has no tasks)
    TASKS = {"default": {"BACKEND": "djtasks.backend.DatabaseBackend"}}
DJTASKS = {
    "QUEUES": {"default": {}, "other": {}, "slow": {}},
    "POLL_INTERVAL": 0.2,
    # DJTASKS_TEST_LISTEN=0 runs a worker subprocess in poll-only mode (as behind a transaction pooler).
    "LISTEN": os.environ.get("DJTASKS_TEST_LISTEN", "1") != "0",
    "HEARTBEAT_INTERVAL": 1,
    "WORKER_TIMEOUT": 5,
    # Synced whenever a scheduler starts; fires only on 29 February.
    "BEAT_SCHEDULE": {
        "testapp-settings": {
            "job": "tests.testapp.tasks.tick",
            "cron": "0 5 29 2 *",
            "tz": "America/New_York",
            "kwargs": {"label": "settings"},
        }
    },
}
