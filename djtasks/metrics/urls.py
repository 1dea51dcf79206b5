"""``path("<prefix>/", include("djtasks.metrics.urls"))`` serves the database gauges at ``<prefix>/metrics``
(protect it: see ``djtasks.metrics.views``)."""

from __future__ import annotations

from django.urls import path

from .views import metrics

app_name = "djtasks_metrics"
urlpatterns = [path("metrics", metrics, name="metrics")]
