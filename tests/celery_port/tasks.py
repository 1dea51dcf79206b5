"""newsletter/tasks.py, ported from Celery (see docs/migrating-from-celery.md, "A worked port")."""

from __future__ import annotations

import os

from djtasks import job, periodic, signals
from tests.testapp.models import Execution


class CrmBusy(Exception):
    """The CRM asked us to come back later."""


def _note(label: str, attempt: int = 0, job_id=None) -> None:
    Execution.objects.create(job_id=job_id, label=label, attempt=attempt, pid=os.getpid())


# @shared_task
@job
def send_welcome(user_id: int) -> str:
    _note(f"welcome {user_id}")
    return f"welcome sent to {user_id}"


# @shared_task  (queue from CELERY_TASK_ROUTES = {"newsletter.tasks.render_*": {"queue": "slow"}})
@job
def render_issue(issue_id: int) -> str:
    return f"<h1>Issue {issue_id}</h1>"


# @shared_task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=3)
@job(bind=True, max_attempts=4, retry_on=(ConnectionError,), retry_backoff=True)
def deliver(ctx, subscriber_id: int, issue_id: int) -> str:
    _note(f"deliver {subscriber_id}", ctx.attempt, ctx.job_id)
    if subscriber_id % 10 == 3 and ctx.attempt == 1:
        raise ConnectionError("SMTP server went away")  # retried after a backoff
    if subscriber_id % 10 == 9:
        raise ConnectionError("mailbox does not exist")  # every attempt fails: job_failed
    return f"issue {issue_id} to {subscriber_id}"


# @shared_task(bind=True, default_retry_delay=30, max_retries=5)  (30 s in the original; short for the tests)
@job(bind=True, max_attempts=6, retry_delay=0.2)
def sync_subscriber(ctx, subscriber_id: int) -> int:
    if ctx.attempt < 3:
        # try: crm.push(...) except CrmBusy as exc: raise self.retry(exc=exc)
        ctx.retry(exc=CrmBusy("try again later"))
    return ctx.attempt


# CELERY_BEAT_SCHEDULE = {"weekly-digest": {"task": "newsletter.tasks.send_digest",
#                                           "schedule": crontab(minute=0, hour=7, day_of_week="mon")}}
@periodic(cron="0 7 * * mon", tz="Europe/Paris", name="weekly-digest")
# @shared_task
@job
def send_digest(issue_id: int = 1, subscribers: tuple[int, ...] = (1, 2, 3)) -> int:
    # group(deliver.s(s, issue_id) for s in subscribers)() in the original: a fan-out with no callback
    # is bulk_delay here (one INSERT for all).
    deliver.bulk_delay((s, issue_id) for s in subscribers)
    return len(subscribers)


# @task_failure.connect(sender=deliver)
def alert_on_failed_delivery(sender, job_id, error, exception, **kwargs) -> None:
    _note(f"alert {error['type']}: {error['message']} ({type(exception).__name__})", job_id=job_id)


signals.job_failed.connect(alert_on_failed_delivery, sender=deliver)
