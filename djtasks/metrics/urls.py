"""``path("<prefix>/", include("djtasks.metrics.urls"))`` serves the database gauges at ``<prefix>/metrics``
(protect it: see ``djtasks.metrics.views``)."""

from __future__ import annotations

from django.urls import path

from . import require_prometheus_client

require_prometheus_client()  # a clear error at URL loading rather than an ImportError deep in it

from .views import metrics  # noqa: E402

app_name = "djtasks_metrics"
urlpatterns = [path("metrics", metrics, name="metrics")]
