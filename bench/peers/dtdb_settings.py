"""Django settings for the django-tasks-db side of the comparison: its own database on the benchmark cluster.

``dtdb_bench.py`` creates that database and exports its URL in ``BENCH_DTDB_DATABASE_URL`` before Django
starts, here and in the ``db_worker`` processes it runs.
"""

from __future__ import annotations

import os

import django
import environ

DATABASES = {"default": environ.Env.db_url_config(os.environ["BENCH_DTDB_DATABASE_URL"])}
# Persistent connections: with Django's default CONN_MAX_AGE=0, db_worker's close_old_connections() would
# reconnect on every loop; a worker deployment keeps its connection, and so does djtasks' worker.
DATABASES["default"]["CONN_MAX_AGE"] = None
SECRET_KEY = "bench-only"
DEBUG = False  # db_worker reloads on code changes in DEBUG
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    *(["django_tasks"] if django.VERSION < (6, 0) else []),  # the backport of django.tasks
    "django_tasks_db",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
