"""Settings for benchmarks: a durable (fsync on) throwaway cluster unless DATABASE_URL is set."""

from __future__ import annotations

import os

import django
import environ

if not os.environ.get("DATABASE_URL"):
    from devtools.localpg import throwaway_cluster

    throwaway_cluster("djtasks_bench", durable=True)

DATABASES = {"default": environ.Env().db("DATABASE_URL")}
# Django's default (0) closes a job thread's connection after every job; bench/scale.py's real-job workload
# runs with both (BENCH_CONN_MAX_AGE=60: each job thread keeps its connection, as a worker should).
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
# So pg_stat_activity tells the job threads' Django connections (bench/procs.py sets it for workers) from the
# benchmark script's own; djtasks' worker connections name themselves (djtasks-producer, ...).
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = os.environ.get("BENCH_APP_NAME", "bench")
SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "djtasks", "bench"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJTASKS = {"QUEUES": {"default": {}}}
if django.VERSION >= (6, 0):  # @task on djtasks (bench/tasks_backend.py)
    TASKS = {"default": {"BACKEND": "djtasks.backend.DatabaseBackend"}}
