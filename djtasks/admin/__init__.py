"""djtasks in the Django admin: jobs, workers and the queue dashboard, one module each.

Importing this package registers them with ``django.contrib.admin.site`` (the admin autodiscovers it).
"""

from __future__ import annotations

from . import dashboard, jobs, workers

__all__ = ["dashboard", "jobs", "workers"]
