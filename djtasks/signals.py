"""Signals sent by djtasks. Receivers run in the process that sends them (caller or worker)."""

from __future__ import annotations

from django.dispatch import Signal

job_enqueued = Signal()  # sender=Job; job_id, queue, run_at
job_started = Signal()  # sender=Job; job_id, attempt
job_finished = Signal()  # sender=Job; job_id, attempt, status, result, error
job_retrying = Signal()  # sender=Job; job_id, attempt, run_at, error
worker_started = Signal()  # sender=None; worker_id, queues
worker_stopping = Signal()  # sender=None; worker_id
