"""The djtasks admin, one module per part (autodiscovered by ``django.contrib.admin`` as ``djtasks.admin``)."""

from . import schedules  # noqa: F401 - registers the periodic schedules admin
