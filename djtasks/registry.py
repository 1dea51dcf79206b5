"""Job registration and lookup by name.

A worker runs only what is registered here: a job row names its function, and a name that no ``@job``
registered is never imported or executed from the row's text.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from .exceptions import NotRegistered

if TYPE_CHECKING:
    from .jobs import Job


class Registry:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def register(self, job: Job) -> None:
        existing = self._jobs.get(job.name)
        if existing is not None and existing.func.__qualname__ != job.func.__qualname__:
            raise ImproperlyConfigured(
                f"job name {job.name!r} is already registered by {existing.func.__module__}."
                f"{existing.func.__qualname__}; give one of them another name=..."
            )
        # Re-registering the same function (a module imported twice, e.g. under autoreload) replaces it.
        self._jobs[job.name] = job

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise NotRegistered(name) from None

    def find(self, name: str) -> Job | None:
        """The job registered as ``name``, or ``None`` (no error: for the worker's dispatch)."""
        return self._jobs.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._jobs

    def similar(self, name: str, n: int = 3) -> list[str]:
        """Registered names closest to ``name``, for "did you mean" hints."""
        return difflib.get_close_matches(name, sorted(self._jobs), n=n)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def unregister(self, name: str) -> None:
        self._jobs.pop(name, None)


registry = Registry()
