"""The test settings with ``default`` going through a private PgBouncer (started by the ``pgbouncers`` fixture) and
``direct`` reaching the test cluster itself, as a site behind PgBouncer would set them up. Worker subprocesses of
the PgBouncer tests run with it; ``pooled_env()`` (tests/conftest.py) fills in the environment it reads."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, DJTASKS, env

DATABASES = {
    "default": {**env.db("DJTASKS_TEST_POOLER_URL"), "DISABLE_SERVER_SIDE_CURSORS": True},
    "direct": DATABASES["default"],
}
DJTASKS = {
    **DJTASKS,
    "QUEUES": {**DJTASKS["QUEUES"], "limited": {"concurrency": 2}},  # a limited claim goes through the pooler too
    "POOL_MODE": os.environ["DJTASKS_TEST_POOL_MODE"] or None,  # empty: not said (the worker notices)
    "LISTEN_DATABASE": os.environ.get("DJTASKS_TEST_LISTEN_DATABASE") or None,
    # A long poll shows that a job started at once was woken by LISTEN, not found by polling.
    "POLL_INTERVAL": float(os.environ.get("DJTASKS_TEST_POLL_INTERVAL") or DJTASKS["POLL_INTERVAL"]),
}
