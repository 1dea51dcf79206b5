"""OpenTelemetry tracing in-process (the SDK's in-memory exporter): every enqueue path writes the current span's
context into the row, the worker's executor (``drain()``: claim, ``execute``, finish, as a worker process does)
runs each attempt in a CONSUMER span whose parent is that context, with the job's attributes and outcome; a
malformed context is a warning and the job runs in a new trace. A real ``runworker`` is
tests/acceptance/test_tracing.py."""

from __future__ import annotations

import logging

import django
import pytest
from asgiref.sync import async_to_sync
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, StatusCode

import djtasks
from djtasks import JobResult, chain, tracing
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import tasks
from tests.tracing_support import hex_ids, memory_exporter

pytestmark = pytest.mark.django_db(transaction=True)

PROBE = "tests.testapp.tasks.span_probe"


@pytest.fixture
def spans():
    exporter = memory_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


def request_span():
    """A span standing for the web request that enqueues."""
    return trace.get_tracer("tests").start_as_current_span("GET /signup", kind=SpanKind.SERVER)


def finished(exporter, name=PROBE):
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_tracing_is_on_when_the_api_is_installed():
    assert tracing.TRACER is not None


def test_a_delayed_job_runs_in_a_child_span_of_the_enqueuing_span(spans):
    with request_span() as parent:
        result = tasks.span_probe.delay()
    stored = Job.objects.get(id=result.id).trace_context
    parent_ids = hex_ids_of(parent)
    assert stored["traceparent"].startswith(f"00-{parent_ids['trace_id']}-{parent_ids['span_id']}-")  # W3C
    assert drain() == 1
    (span,) = finished(spans)
    assert span.kind == SpanKind.CONSUMER
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert dict(span.attributes) == {
        "djtasks.job.id": str(result.id),
        "djtasks.job.name": PROBE,
        "djtasks.job.queue": "default",
        "djtasks.job.attempt": 1,
        "djtasks.job.outcome": "succeeded",
        "messaging.system": "djtasks",
        "messaging.operation.type": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": str(result.id),
    }
    assert span.status.status_code == StatusCode.UNSET
    # The span is the current one while the function runs: the job's own spans are its children.
    seen = result.get(timeout=0)
    assert (seen["trace_id"], seen["span_id"]) == (hex_ids(span)["trace_id"], hex_ids(span)["span_id"])


def hex_ids_of(span):
    context = span.get_span_context()
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def test_without_an_active_span_the_row_carries_nothing_and_the_job_starts_its_own_trace(spans):
    result = tasks.span_probe.delay()
    assert Job.objects.get(id=result.id).trace_context is None
    with request_span():  # a span current where the job runs is not its parent: only the row says who is
        assert drain() == 1
    (span,) = finished(spans)
    assert span.parent is None
    assert span.attributes["djtasks.job.outcome"] == "succeeded"


def _enqueue_every_way():
    """One job through each enqueue path; returns their ids."""
    ids = [
        tasks.span_probe.delay().id,
        tasks.span_probe.apply_async(countdown=0, queue="other", priority=3).id,
        *(r.id for r in tasks.span_probe.bulk_delay([(), (), tasks.span_probe.s()])),
        djtasks.enqueue(PROBE).id,
        tasks.unique_add.delay(1, 2).id,  # job_insert_unique
    ]
    workflow = chain(tasks.span_probe.si(), tasks.span_probe.si()).apply_async()
    ids += [workflow.id, workflow.parent.id]
    return ids


def test_every_enqueue_path_carries_the_context(spans):
    with request_span() as parent:
        ids = _enqueue_every_way()
    assert len(ids) == 9
    contexts = dict(Job.objects.filter(id__in=ids).values_list("id", "trace_context"))
    assert all(contexts[i] is not None and "traceparent" in contexts[i] for i in ids), contexts
    while drain():  # the chain's second step is released when the first finishes
        pass
    job_spans = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert sorted(s.attributes["djtasks.job.id"] for s in job_spans) == sorted(map(str, ids))
    assert {s.parent.span_id for s in job_spans} == {parent.get_span_context().span_id}
    assert {s.context.trace_id for s in job_spans} == {parent.get_span_context().trace_id}
    assert {s.attributes["djtasks.job.outcome"] for s in job_spans} == {"succeeded"}


def test_adelay_from_async_code_carries_the_context(spans):
    async def view():
        with request_span() as parent:
            return parent, await tasks.span_probe.adelay()

    parent, result = async_to_sync(view)()
    assert drain() == 1
    (span,) = finished(spans)
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.attributes["djtasks.job.id"] == str(result.id)


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks needs Django 6")
def test_a_django_tasks_task_carries_the_context(spans):
    from tests.testapp import django_tasks

    with request_span() as parent:
        result = django_tasks.add.enqueue(2, 3)
    assert drain() == 1
    (span,) = finished(spans, "tests.testapp.django_tasks.add")
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.attributes["djtasks.job.id"] == str(result.id)


def test_a_job_enqueued_by_a_job_is_a_child_of_its_span(spans):
    with request_span() as parent:
        tasks.span_probe.delay(then="tests.testapp.tasks.echo")
    assert drain() == 2
    (probe,) = finished(spans)
    (child,) = finished(spans, "tests.testapp.tasks.echo")
    assert probe.parent.span_id == parent.get_span_context().span_id
    assert child.parent.span_id == probe.context.span_id
    assert child.context.trace_id == parent.get_span_context().trace_id


def test_a_failure_sets_error_status_and_records_the_exception(spans):
    with request_span():
        result = tasks.boom.delay("kaput")
    drain()
    assert JobResult(result.id).status == "failed"
    (span,) = finished(spans, "tests.testapp.tasks.boom")
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "builtins.ValueError: kaput"
    assert span.attributes["djtasks.job.outcome"] == "failed"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "builtins.ValueError"
    assert event.attributes["exception.message"] == "kaput"
    assert "ValueError: kaput" in event.attributes["exception.stacktrace"]


def test_each_retry_is_a_new_span_with_the_same_parent(spans):
    with request_span() as parent:
        result = tasks.span_probe.delay(fail_until=2)  # max_attempts=3, retry_delay=0
    while drain():
        pass
    assert JobResult(result.id).status == "succeeded"
    attempts = sorted(finished(spans), key=lambda s: s.attributes["djtasks.job.attempt"])
    assert [s.attributes["djtasks.job.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.attributes["djtasks.job.outcome"] for s in attempts] == ["retry", "retry", "succeeded"]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert {s.parent.span_id for s in attempts} == {parent.get_span_context().span_id}
    assert len({s.context.span_id for s in attempts}) == 3


def test_an_async_job_runs_in_a_child_span(spans):
    with request_span() as parent:
        result = tasks.aspan_probe.delay(fail_until=1)
    while drain():
        pass
    attempts = sorted(
        finished(spans, "tests.testapp.tasks.aspan_probe"), key=lambda s: s.attributes["djtasks.job.attempt"]
    )
    assert [s.attributes["djtasks.job.outcome"] for s in attempts] == ["retry", "succeeded"]
    assert {s.parent.span_id for s in attempts} == {parent.get_span_context().span_id}
    seen = JobResult(result.id).get(timeout=0)
    assert seen["span_id"] == hex_ids(attempts[-1])["span_id"]  # current inside the coroutine


def test_djtasks_testing_runs_sync_and_async_jobs_in_spans_too(spans):
    from djtasks.testing import JobRunner

    with request_span() as parent:
        sync, coro = tasks.span_probe.delay(), tasks.aspan_probe.delay()
    JobRunner().run()
    (span,) = finished(spans)
    (aspan,) = finished(spans, "tests.testapp.tasks.aspan_probe")
    assert {span.parent.span_id, aspan.parent.span_id} == {parent.get_span_context().span_id}
    assert sync.get(timeout=0)["span_id"] == hex_ids(span)["span_id"]
    assert coro.get(timeout=0)["span_id"] == hex_ids(aspan)["span_id"]


@pytest.mark.parametrize(
    "stored",
    [
        "garbage",  # a JSON string
        42,
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        {"traceparent": 5},
        {"traceparent": "not-a-traceparent"},
        {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},  # all-zero ids are invalid
        {},
    ],
    ids=["string", "number", "list", "non-string-value", "bad-traceparent", "zero-ids", "empty"],
)
def test_a_malformed_context_is_a_warning_and_the_job_runs_in_a_new_trace(spans, caplog, stored):
    result = tasks.span_probe.delay()
    Job.objects.filter(id=result.id).update(trace_context=stored)
    with caplog.at_level(logging.WARNING, logger="djtasks.tracing"):
        assert drain() == 1
    assert JobResult(result.id).status == "succeeded"
    (span,) = finished(spans)
    assert span.parent is None
    assert span.attributes["djtasks.job.outcome"] == "succeeded"
    (record,) = [r for r in caplog.records if r.name == "djtasks.tracing"]
    assert record.levelno == logging.WARNING
    assert str(result.id) in record.getMessage() and PROBE in record.getMessage()
    assert "malformed trace context" in record.getMessage()


def test_text_that_is_not_json_is_a_warning_too(caplog):
    # The column is jsonb, so only a row from elsewhere (a raw copy, another tool) could hold plain text.
    row = {"id": "0190-x", "name": "some.job", "attempt": 1, "trace_context": "{not json"}
    with caplog.at_level(logging.WARNING, logger="djtasks.tracing"):
        context = tracing.parent_of(row)
    assert not trace.get_current_span(context).get_span_context().is_valid
    assert "0190-x some.job attempt 1: malformed trace context in its row (it is not JSON)" in caplog.text


def test_the_admin_job_page_shows_the_trace_id(spans, admin_client):
    with request_span() as parent:
        traced = tasks.span_probe.delay()
    plain = tasks.span_probe.delay()
    page = admin_client.get(f"/admin/djtasks/job/{traced.id}/change/").content.decode()
    assert (
        f'id="djtasks-trace" title="the OpenTelemetry trace of the code that enqueued it">{hex_ids_of(parent)["trace_id"]}<'
        in page
    )
    assert "djtasks-trace" not in admin_client.get(f"/admin/djtasks/job/{plain.id}/change/").content.decode()


class BrokenPropagator(TextMapPropagator):
    def inject(self, carrier, context=None, setter=None):
        raise RuntimeError("propagator bug")

    def extract(self, carrier, context=None, getter=None):
        raise RuntimeError("propagator bug")

    @property
    def fields(self):
        return set()


def test_a_failing_propagator_neither_stops_an_enqueue_nor_fails_the_job(spans, caplog):
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(BrokenPropagator())
    try:
        with request_span(), caplog.at_level(logging.WARNING, logger="djtasks.tracing"):
            result = tasks.span_probe.delay()
        assert Job.objects.get(id=result.id).trace_context is None
        assert "could not write the trace context of a new job" in caplog.text
        Job.objects.filter(id=result.id).update(trace_context={"traceparent": "x"})
        with caplog.at_level(logging.WARNING, logger="djtasks.tracing"):
            assert drain() == 1
    finally:
        propagate.set_global_textmap(before)
    assert JobResult(result.id).status == "succeeded"
    assert "the propagator raised RuntimeError('propagator bug')" in caplog.text
    (span,) = finished(spans)
    assert span.parent is None
