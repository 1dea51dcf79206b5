"""OpenTelemetry tracing across processes: jobs enqueued in a span of this process run on a real ``runworker``
(whose processes install an SDK exporting to a JSON-lines file, tests/settings_tracing.py) in child spans of it,
sync and async, retried and failed; and without the package (imports of ``opentelemetry`` blocked by a
``sitecustomize``) jobs enqueue and run, on a worker and in-process, and nothing of it is ever imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from djtasks import JobResult
from djtasks.models import Job
from tests.conftest import ROOT, subprocess_env, wait_until
from tests.testapp import tasks
from tests.tracing_support import memory_exporter, read_spans

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]

PROBE = "tests.testapp.tasks.span_probe"
APROBE = "tests.testapp.tasks.aspan_probe"

# Makes ``opentelemetry`` unimportable in a process (as if it were not installed) and counts the attempts.
BLOCKER = """
import sys


class BlockOpenTelemetry:
    attempts = 0

    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            BlockOpenTelemetry.attempts += 1
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockOpenTelemetry())
"""


def request_span():
    memory_exporter()  # this process's SDK: the enqueuing span is a real one
    return trace.get_tracer("tests").start_as_current_span("POST /orders", kind=SpanKind.SERVER)


def ids_of(span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def without_opentelemetry(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess in which ``import opentelemetry`` fails."""
    site = tmp_path / "no_otel"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(site), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def test_jobs_on_a_real_worker_run_in_child_spans_of_the_enqueuing_span(start_worker, tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    with request_span() as parent:
        plain = tasks.span_probe.delay()
        retried = tasks.span_probe.delay(fail_until=1)  # attempt 1 fails, attempt 2 succeeds
        coro = tasks.aspan_probe.delay(fail_until=1)
        failed = tasks.boom.delay("kaput")
        limited = tasks.span_probe.apply_async(queue="other")  # a limited queue there: the limited claim
    untraced = tasks.span_probe.delay()
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_tracing", "DJTASKS_TEST_SPANS": str(spans_file)}
    worker = start_worker("--processes", "2", "--threads", "2", env=env)
    ids = [plain.id, retried.id, coro.id, failed.id, limited.id, untraced.id]
    wait_until(
        lambda: Job.objects.filter(id__in=ids, status__in=["succeeded", "failed"]).count() == len(ids),
        timeout=90,
        message="the jobs to finish",
    )
    with connection.cursor() as cur:
        cur.execute("SELECT concurrency FROM djtasks_queue WHERE kind = 'queue' AND name = 'other'")
        assert cur.fetchone() == (4,)
    wait_until(lambda: len(read_spans(spans_file)) >= 8, timeout=30, message="8 spans in the file")
    spans = read_spans(spans_file)
    by_job: dict[str, list[dict]] = {}
    for span in spans:
        by_job.setdefault(span["attributes"]["djtasks.job.id"], []).append(span)
    trace_id, parent_id = ids_of(parent)
    traced = [by_job[str(i)] for i in (plain.id, retried.id, coro.id, failed.id, limited.id)]
    assert [len(s) for s in traced] == [1, 2, 2, 1, 1]
    for span in (s for attempts in traced for s in attempts):
        assert (span["trace_id"], span["parent_id"], span["kind"]) == (trace_id, parent_id, "CONSUMER")
    # Each attempt is its own span; the function ran with it current (the probe reports the span it saw).
    for result, name, queue in ((plain, PROBE, "default"), (retried, PROBE, "default"), (coro, APROBE, "default"),
                                (limited, PROBE, "other")):  # fmt: skip
        attempts = sorted(by_job[str(result.id)], key=lambda s: s["attributes"]["djtasks.job.attempt"])
        last = attempts[-1]
        assert last["name"] == name
        assert last["attributes"]["djtasks.job.outcome"] == "succeeded"
        assert last["attributes"]["djtasks.job.queue"] == queue
        seen = JobResult(result.id).get(timeout=0)
        assert (seen["trace_id"], seen["span_id"]) == (trace_id, last["span_id"])
        assert seen["pid"] != os.getpid()
    for result in (retried, coro):
        first, second = sorted(by_job[str(result.id)], key=lambda s: s["attributes"]["djtasks.job.attempt"])
        assert (first["attributes"]["djtasks.job.attempt"], second["attributes"]["djtasks.job.attempt"]) == (1, 2)
        assert (first["attributes"]["djtasks.job.outcome"], first["status"]) == ("retry", "ERROR")
        assert first["events"] == [{"name": "exception", "type": "builtins.ValueError"}]
        assert first["span_id"] != second["span_id"]
    (boom,) = by_job[str(failed.id)]
    assert (boom["status"], boom["attributes"]["djtasks.job.outcome"]) == ("ERROR", "failed")
    assert boom["description"] == "builtins.ValueError: kaput"
    (alone,) = by_job[str(untraced.id)]
    assert alone["parent_id"] is None and alone["trace_id"] != trace_id
    assert worker.stop() == 0
    # The SDK started in each worker process (worker_started): the supervisor had no export thread of its own.
    assert "threads already run in the supervisor" not in worker.log


def test_without_opentelemetry_a_worker_runs_jobs_and_never_imports_it(start_worker, tmp_path):
    with request_span():
        carried = tasks.span_probe.delay()  # enqueued here with a context: a worker without the package ignores it
    plain = tasks.aspan_probe.delay()
    assert Job.objects.get(id=carried.id).trace_context is not None
    worker = start_worker("--processes", "1", "--threads", "2", env=without_opentelemetry(tmp_path))
    wait_until(
        lambda: Job.objects.filter(id__in=[carried.id, plain.id], status="succeeded").count() == 2,
        timeout=90,
        message="the jobs to succeed",
    )
    for result in (carried, plain):
        seen = JobResult(result.id).get(timeout=0)
        assert seen["otel_modules"] == [] and seen["blocked"], seen
        assert seen["span_id"] is None
    assert worker.stop() == 0
    assert "Traceback" not in worker.log


ENQUEUE_AND_RUN = """
import json, sys

import django

django.setup()

import djtasks
from djtasks import chain, tracing
from djtasks.models import Job
from djtasks.testing import JobRunner
from tests.conftest import drain
from tests.testapp import tasks

assert tracing.TRACER is None
results = [
    tasks.span_probe.delay(),
    tasks.span_probe.apply_async(queue="other"),
    *tasks.span_probe.bulk_delay([(), ()]),
    djtasks.enqueue("tests.testapp.tasks.span_probe"),
    chain(tasks.span_probe.si(), tasks.span_probe.si()).apply_async(),
    tasks.aspan_probe.delay(),
]
ran = drain()  # the worker's own claim, execute and finish
more = [tasks.span_probe.delay(), tasks.aspan_probe.delay()]
ran += len(JobRunner().run())  # djtasks.testing, which runs async jobs its own way
results += more
print(json.dumps({
    "ran": ran,
    "contexts": Job.objects.exclude(trace_context=None).count(),
    "statuses": sorted(set(Job.objects.values_list("status", flat=True))),
    "seen": [r.get(timeout=0) for r in results],
    "otel_modules": sorted(m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")),
    "import_attempts": [type(f).attempts for f in sys.meta_path if type(f).__name__ == "BlockOpenTelemetry"],
}))
"""


def test_without_opentelemetry_jobs_enqueue_and_run_in_process_and_it_is_looked_for_once(tmp_path):
    env = {**subprocess_env(), **without_opentelemetry(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ENQUEUE_AND_RUN)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ran"] == 10
    assert report["contexts"] == 0
    assert report["statuses"] == ["succeeded"]
    assert all(seen["otel_modules"] == [] and seen["blocked"] for seen in report["seen"]), report["seen"]
    assert report["otel_modules"] == []
    # Looked for once, when djtasks.tracing was imported; never per enqueue or per job.
    assert report["import_attempts"] == [1]
