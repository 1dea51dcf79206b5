"""The test settings with the PostGIS engine: ``manage.py check`` must pass (``djtasks.E003`` reads the backend's
vendor, not its ENGINE path). No PostGIS server is needed; Django's GIS backend needs the GDAL library."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

DATABASES["default"]["ENGINE"] = "django.contrib.gis.db.backends.postgis"  # noqa: F405
