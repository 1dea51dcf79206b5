"""Signals sent by djtasks. Receivers run synchronously in the process and thread that sends them.

``sender`` is the ``Job`` (the decorated function), so ``job_failed.connect(alert, sender=charge_card)``
receives only that job's failures; connect without ``sender`` to receive every job's. A job enqueued or run
under a name not registered in the sending process has its name (a ``str``) as sender. A receiver that raises
is logged in the worker and never fails the job.

Where each is sent:

- ``job_enqueued`` in the enqueuing process (web request, shell, another job), right after the row is
  inserted: inside the caller's transaction, so the job may still vanish on rollback.
  Arguments: ``job_id``, ``queue``, ``run_at``.
- ``job_started`` in the worker process, in the thread about to run the job. ``job_id``, ``attempt``.
- ``job_retrying`` in the worker process after an attempt failed and another is due.
  ``job_id``, ``attempt`` (the one that failed), ``run_at`` (the next one), ``error`` (a dict: ``type``,
  ``message``, ``traceback``, ``attempt``, ``at``), ``exception`` (the exception instance).
- ``job_failed`` in the worker process after an attempt failed and no other follows (attempts spent, an
  exception ``retry_on`` does not list, an unknown job name, a time limit, a dead process: see below).
  ``job_id``, ``attempt``, ``error``, ``exception``.
- ``job_finished`` in the worker process after every attempt, whatever its end: ``job_id``, ``attempt``,
  ``status`` (``"succeeded"``, ``"failed"``, ``"cancelled"``, or ``"queued"`` when a retry follows),
  ``result`` (the return value as ``JobResult.result`` gives it: decoded JSON) and ``error`` (dict or None).

An attempt the worker process ends itself is signalled there, before its outcome is written, so a receiver
reading the job's row still sees it ``running``. An attempt that ended with its process is signalled by the
process that records it, after writing it: the ``runworker`` supervisor for a hard ``time_limit`` or
``cancel(terminate=True)`` (``exception`` is the ``TimeLimitExceeded``, or None) and for a worker process it
saw die, and whichever supervisor's rescuer found a silent worker (``WorkerLost``; ``exception`` None). Connect
receivers in code every process imports (a ``tasks.py``, or ``AppConfig.ready()``).
"""

from __future__ import annotations

from django.dispatch import Signal

job_enqueued = Signal()  # sender=Job; job_id, queue, run_at
job_started = Signal()  # sender=Job; job_id, attempt
job_finished = Signal()  # sender=Job; job_id, attempt, status, result, error
job_retrying = Signal()  # sender=Job; job_id, attempt, run_at, error, exception
job_failed = Signal()  # sender=Job; job_id, attempt, error, exception
worker_started = Signal()  # sender=None; worker_id, queues
worker_stopping = Signal()  # sender=None; worker_id
