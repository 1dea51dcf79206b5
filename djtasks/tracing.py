"""OpenTelemetry tracing of jobs, on when ``opentelemetry-api`` is installed (``pip install djtasks[tracing]``).

At enqueue (``delay``, ``apply_async``, ``bulk_delay``, ``djtasks.enqueue``, the django.tasks backend, workflows:
every row is made by ``Job._row``) the current span's context is written into the job row as the headers of
the global propagator (W3C ``traceparent``/``tracestate`` by default) in ``djtasks_job.trace_context``. The
worker runs each attempt in a span of kind CONSUMER named after the job, whose parent is that context, so a
request and the jobs it started are one trace; a job's own spans (its database calls, HTTP requests, the jobs
it enqueues) are children of its span. A retry is a new span with the same parent. A row without a context
(nothing was traced when it was enqueued; a periodic job) runs in a span that starts a trace of its own.

No span is made at enqueue: the job's span is the child of the span that enqueued it, which is what a trace
needs, and a request that enqueues pays for nothing but the few microseconds of writing the headers (the
INSERT itself shows up in a trace through the site's database instrumentation, if it has one).

Whether tracing is on is decided once, when this module is imported: without the package nothing of it is
imported, ``TRACER`` is ``None`` and each hook (one per enqueued row, one per job run) is one ``is None``
check. With the API but no SDK (no TracerProvider installed), an enqueue finds no span to carry and a job
makes none (``_no_sdk``: one read of the API's global).

Failure modes: a malformed context in a row (not JSON, not an object of strings, or headers the propagator
cannot read, e.g. from a site configured with another propagator) is logged as a warning naming the job,
which then runs normally, in a trace of its own. Nothing here raises into a job or the worker.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

    from .rows import ClaimedJob, Outcome

logger = logging.getLogger("djtasks.tracing")

TRACER_NAME = "djtasks"  # the instrumentation scope of every span made here

# Attribute names: djtasks' own, and OpenTelemetry's messaging conventions for a consumer's "process" span.
ATTR_JOB_ID = "djtasks.job.id"
ATTR_JOB_NAME = "djtasks.job.name"
ATTR_QUEUE = "djtasks.job.queue"
ATTR_ATTEMPT = "djtasks.job.attempt"
ATTR_OUTCOME = "djtasks.job.outcome"
# How an attempt ended (the span's outcome attribute), by the status its outcome writes.
OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "queued": "retry", "cancelled": "cancelled"}

TRACER: Tracer | None
try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context as EmptyContext
except ImportError:  # not installed: tracing is off, and nothing is looked for again
    TRACER = None
else:
    # A proxy until the site installs a TracerProvider (at any time, e.g. after this import), then the real one.
    TRACER = trace.get_tracer(TRACER_NAME)
    _PROVIDER_GLOBAL = hasattr(trace, "_TRACER_PROVIDER")  # where the API keeps the installed provider
    _PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ  # one it would load on first use


def carrier() -> str | None:
    """The current span's context as JSON text for a new job row, or ``None`` when no span is active (or the
    propagator writes nothing). Call only when ``TRACER`` is not ``None``."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    try:
        propagate.inject(headers)
        return json.dumps(headers, separators=(",", ":")) if headers else None
    except Exception:  # a site's propagator must not make enqueueing fail: the job runs untraced
        logger.warning("could not write the trace context of a new job; it will run in a new trace", exc_info=True)
        return None


def parent_of(row: ClaimedJob) -> Context:
    """The context a job's span starts in: the one in its row, or an empty one (a new trace) when the row has
    none or a malformed one (then with a warning naming the job)."""
    text = row.get("trace_context")
    if text is None:
        return EmptyContext()
    problem = None
    try:
        headers: Any = json.loads(text) if isinstance(text, (str, bytes)) else text
    except ValueError:
        problem = "it is not JSON"
    else:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            problem = f"it is not an object of strings but {type(headers).__name__}"
        else:
            try:
                found = propagate.extract(headers, context=EmptyContext())
            except Exception as exc:  # noqa: BLE001 - a site's propagator must not fail the job
                problem = f"the propagator raised {exc!r}"
            else:
                if trace.get_current_span(found).get_span_context().is_valid:
                    return found
                problem = "the propagator found no valid span context in it"
    logger.warning(
        "job %s %s attempt %s: malformed trace context in its row (%s): %.200r; it runs in a new trace",
        row["id"],
        row["name"],
        row["attempt"],
        problem,
        text,
    )
    return EmptyContext()


class JobSpan:
    """The span of one attempt, current (in this thread, or this asyncio task) from its start to ``end``."""

    def __init__(self, row: ClaimedJob) -> None:
        assert TRACER is not None
        parent = parent_of(row)
        attributes: dict[str, str | int] = {
            ATTR_JOB_ID: str(row["id"]),
            ATTR_JOB_NAME: row["name"],
            ATTR_QUEUE: row["queue"],
            ATTR_ATTEMPT: row["attempt"],
            "messaging.system": "djtasks",
            "messaging.operation.type": "process",
            "messaging.destination.name": row["queue"],
            "messaging.message.id": str(row["id"]),
        }
        self.span: Span = TRACER.start_span(
            row["name"], context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span, parent))

    def end(self, outcome: Outcome | None, exc: BaseException | None = None) -> None:
        """Record how the attempt ended (``exc``: an internal error no outcome was made for), then end the span."""
        span = self.span
        try:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            elif outcome is not None:
                status = outcome["status"]
                span.set_attribute(ATTR_OUTCOME, OUTCOMES.get(status, status))
                if status in ("failed", "queued") and outcome["error"] is not None:
                    _record_error(span, outcome["error"])
        except Exception:  # a span must never fail the job whose outcome it records
            logger.exception("could not record the outcome on the span of job %s", outcome and outcome["id"])
        finally:
            otel_context.detach(self._token)
            span.end()


def _record_error(span: Span, error_json: str) -> None:
    """Error status and an ``exception`` event (OpenTelemetry's attribute names) from the outcome's error entry."""
    entry = json.loads(error_json)
    kind, message = entry.get("type", ""), entry.get("message", "")
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{kind}: {message}" if message else kind))
    span.add_event(
        "exception",
        {"exception.type": kind, "exception.message": message, "exception.stacktrace": entry.get("traceback", "")},
    )


def _no_sdk() -> bool:
    """True while no TracerProvider is installed (the API's proxy stands in): a span would be a no-op, and the
    API's no-op spans carry no parent on either, so a job skips them (4 us a job less). The API's own
    ``get_tracer_provider()`` looks the environment up on each call (1.5 us); the global it sets is read instead,
    when this version of the API has it."""
    if _PROVIDER_GLOBAL:
        return trace._TRACER_PROVIDER is None and not _PROVIDER_FROM_ENV
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def traced(row: ClaimedJob, run: Callable[[], Outcome]) -> Outcome:
    """``run()`` (an attempt of the job ``row``) in its span."""
    if _no_sdk():
        return run()
    span = JobSpan(row)
    try:
        outcome = run()
    except BaseException as exc:
        span.end(None, exc)
        raise
    span.end(outcome)
    return outcome


async def atraced(row: ClaimedJob, run: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """``await run()`` (an attempt of the async job ``row``) in its span, current in this task only."""
    if _no_sdk():
        return await run()
    span = JobSpan(row)
    try:
        outcome = await run()
    except BaseException as exc:
        span.end(None, exc)
        raise
    span.end(outcome)
    return outcome
