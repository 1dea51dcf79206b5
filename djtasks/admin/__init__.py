"""djtasks in the Django admin: jobs, workers, the queue dashboard and periodic schedules, one module each.

Importing this package registers them with ``django.contrib.admin.site`` (the admin autodiscovers it).
"""

from __future__ import annotations

from . import dashboard, jobs, schedules, workers

__all__ = ["dashboard", "jobs", "schedules", "workers"]
