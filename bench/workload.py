"""The body of a "real job", shared by djtasks' ``bench.tasks.insert_and_update`` and Celery's
``bench.peers.celery_orm.insert_and_update``, so both systems run exactly the same code: one ORM INSERT and
one ORM UPDATE, each in its own (autocommit) transaction, as a typical small job does."""

from __future__ import annotations

from django.utils import timezone


def insert_and_update(n: int) -> None:
    from bench.models import Record

    row = Record.objects.create(n=n, created_at=timezone.now())
    Record.objects.filter(pk=row.pk).update(done=True, updated_at=timezone.now())
