"""The test site's URLs plus the metrics view, mounted as a site would (``tests/integration/test_metrics_gauges.py``)."""

from django.urls import include, path

from example_site.urls import urlpatterns as site_urls

urlpatterns = [*site_urls, path("ops/", include("djtasks.metrics.urls"))]
