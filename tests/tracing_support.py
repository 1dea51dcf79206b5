"""OpenTelemetry SDK set-up for the tracing tests (imported only by them: the SDK is a dev dependency).

The test process records finished spans in memory (``memory_exporter``); a worker subprocess started with
``DJANGO_SETTINGS_MODULE=tests.settings_tracing`` writes them as JSON lines to ``DJTASKS_TEST_SPANS``
(``JsonLinesExporter``), one line a span, appended by each of its processes as the span ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@cache
def memory_exporter() -> InMemorySpanExporter:
    """This process's exporter. OpenTelemetry lets a process install its global TracerProvider once, so every
    tracing test shares it (and clears it first)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def hex_ids(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain values: hex trace, span and parent ids, kind, status, attributes, event names."""
    context = span.get_span_context()
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "status": span.status.status_code.name,
        "description": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "type": (e.attributes or {}).get("exception.type")} for e in span.events],
    }


class JsonLinesExporter(SpanExporter):
    """Appends each finished span (``hex_ids``) as a JSON line to a file shared by a runworker's processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(hex_ids(span)) + "\n" for span in spans)
        with self._lock, self.path.open("a") as f:  # one write per batch: appends from processes do not interleave
            f.write(text)
        return SpanExportResult.SUCCESS


def install_file_exporter(path: str) -> TracerProvider:
    """This process's TracerProvider: a batch processor (its own export thread, every 50 ms) to a JSON-lines file."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(path), schedule_delay_millis=50))
    trace.set_tracer_provider(provider)
    return provider


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
