"""Prometheus metrics (``prometheus_client``, the ``djtasks[metrics]`` extra): worker counters and histograms
served by ``runworker --metrics-port``, and database-level gauges served there and by a view a site can mount
(``djtasks.metrics.urls``). Every metric is listed in ``docs/metrics.md``.

Nothing here is imported unless metrics are asked for: a worker without ``--metrics-port`` and a site that
mounts no metrics view never import ``prometheus_client``.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


def require_prometheus_client() -> None:
    """``ImproperlyConfigured`` with the command that installs it, if ``prometheus_client`` is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"djtasks.metrics needs prometheus_client ({exc}); install it with: pip install 'djtasks[metrics]'"
        ) from None
