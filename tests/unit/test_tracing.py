"""``djtasks.tracing`` without a database: it tells an installed SDK from the API's stand-in, as the API it runs
with keeps it (a fresh process: the test process installs its SDK once for good)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from djtasks import tracing

row = {"id": "j", "name": "n", "queue": "q", "attempt": 1, "trace_context": None}
outcome = {"id": "j", "status": "succeeded", "error": None}
assert tracing._no_sdk()
assert tracing.traced(row, lambda: trace.get_current_span()) is trace.INVALID_SPAN  # no span made
trace.set_tracer_provider(TracerProvider())
assert not tracing._no_sdk()
seen = []
assert tracing.traced(row, lambda: seen.append(trace.get_current_span().is_recording()) or outcome) is outcome
assert seen == [True]
print("ok")
"""


def test_a_job_makes_a_span_once_an_sdk_is_installed_and_none_before():
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
