from __future__ import annotations

from django.apps import AppConfig


class DjtasksConfig(AppConfig):
    name = "djtasks"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import checks  # noqa: F401 - registers the system checks
        from .periodic import install_schedule_hooks

        install_schedule_hooks()  # Schedule.save() validates and wakes the schedulers
        autodiscover_modules("tasks")
