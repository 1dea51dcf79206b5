"""A Django view serving the database-level gauges in the Prometheus text format, for a site to mount::

    # urls.py
    path("djtasks/", include("djtasks.metrics.urls")),        # GET /djtasks/metrics

It answers anyone who can reach it: mount it where only Prometheus can (an internal port or host, a path
the proxy does not expose), or wrap ``metrics`` with your own check, e.g. a bearer token that Prometheus
sends (``authorization: {credentials: ...}`` in its scrape config); ``docs/metrics.md`` shows one.

The gauges are read on Django's connection for ``DJTASKS["DATABASE"]``, inside a savepoint when the request
runs in a transaction (a failing read never leaves it aborted), and cached for a few seconds per process.
A failing read answers ``djtasks_database_up 0`` (status 200: the scrape worked, the database did not).
The worker counters and histograms are not here: each ``runworker --metrics-port`` serves its own.
"""

from __future__ import annotations

from functools import cache

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..conf import djtasks_settings
from ..cursors import django_store
from .database import DatabaseSnapshot, read
from .gauges import DatabaseGauges


def _read() -> DatabaseSnapshot:
    alias = djtasks_settings.DATABASE
    with transaction.atomic(using=alias):
        return read(django_store(alias), now=timezone.now(), worker_timeout=djtasks_settings.WORKER_TIMEOUT)


@cache
def _registry() -> CollectorRegistry:
    """This process's registry for the view (one cache shared by its requests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseGauges(_read))
    return registry


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The database-level gauges (``docs/metrics.md``) in the Prometheus text format."""
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
