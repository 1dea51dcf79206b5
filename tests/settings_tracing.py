"""The test settings plus an OpenTelemetry SDK in each worker process, exporting every finished span as a JSON line
to the file named by ``DJTASKS_TEST_SPANS`` (``runworker`` subprocesses in tests/acceptance/test_tracing.py).

The provider is installed the way the README recommends for workers: in a ``worker_started`` receiver, so each
worker process starts its own export thread (a ``BatchSpanProcessor``'s) after its fork, and the supervisor stays
single-threaded and keeps forking its workers. The queue ``other`` has a concurrency limit here, so its jobs are
claimed by ``job_claim_limited_many``."""

from __future__ import annotations

import os

from djtasks.signals import worker_started, worker_stopping
from tests.settings import *  # noqa: F403
from tests.tracing_support import install_file_exporter

DJTASKS = {**DJTASKS, "QUEUES": {**DJTASKS["QUEUES"], "other": {"concurrency": 4}}}  # noqa: F405


def _start_tracing(**kwargs: object) -> None:
    provider = install_file_exporter(os.environ["DJTASKS_TEST_SPANS"])
    worker_stopping.connect(lambda **kw: provider.force_flush(), weak=False)


worker_started.connect(_start_tracing)
