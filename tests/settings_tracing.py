"""The test settings plus an OpenTelemetry SDK that writes every finished span as a JSON line to the file named by
``DJTASKS_TEST_SPANS`` (for ``runworker`` subprocesses in tests/acceptance/test_tracing.py). A site installs its
TracerProvider the same way: once per process, before jobs run (settings, wsgi.py, or an AppConfig.ready()).
The queue ``other`` has a concurrency limit here, so its jobs are claimed by ``job_claim_limited_many``."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.tracing_support import install_file_exporter

DJTASKS = {**DJTASKS, "QUEUES": {**DJTASKS["QUEUES"], "other": {"concurrency": 4}}}  # noqa: F405

install_file_exporter(os.environ["DJTASKS_TEST_SPANS"])
