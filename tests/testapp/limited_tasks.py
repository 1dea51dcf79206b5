"""A job with a fleet-wide concurrency limit. Not in tasks.py on purpose: worker subprocesses autodiscover
tasks.py, and a limited job name there would send every test's claims through the limited path too. The
flow-control tests import it."""

from __future__ import annotations

from djtasks import job


@job(concurrency=1)
def one_at_a_time():
    return "alone"
