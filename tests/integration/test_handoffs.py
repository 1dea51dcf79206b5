"""The handoffs service: a workflow job that ended without its hand-off (its worker died between expiring it
in the claim and handing it on) is handed on later, so the steps after it end cancelled instead of waiting."""

from __future__ import annotations

import pytest
from django.utils import timezone

from djtasks import chain, chord
from djtasks.maintenance.handoffs import Handoffs
from djtasks.models import Job
from djtasks.store import queries
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def strand(job_id) -> None:
    """What the claim leaves when the worker dies before its hand-off: the job cancelled, nothing downstream."""
    Job.objects.filter(id=job_id).update(status="cancelled", finished_at=timezone.now())


def test_the_query_is_named():
    assert "job_stranded_many" in queries()


def test_nothing_stranded_is_a_no_op(store):
    last = chain(tasks.add.s(1, 1), tasks.add.s(1)).delay()
    assert Handoffs(store).run_once(timezone.now()).jobs == 0
    assert last.refresh().status == "waiting"


def test_a_chain_step_cancelled_without_its_hand_off_cancels_the_rest(store):
    last = chain(tasks.add.s(1, 1), tasks.add.s(1), tasks.add.s(1)).delay()
    first = last.parent.parent
    strand(first.id)
    assert store.job_stranded_many(limit=10) == [first.id]
    result = Handoffs(store).run_once(timezone.now())
    assert (result.jobs, result.cancelled) == (1, 2)
    assert last.refresh().status == "cancelled" and last.parent.refresh().status == "cancelled"
    assert str(first.id) in last.error["message"]
    assert store.job_stranded_many(limit=10) == []
    assert Handoffs(store).run_once(timezone.now()).jobs == 0


def test_a_chord_header_cancelled_without_its_hand_off_cancels_the_callback(store):
    callback = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.total.s()).delay()
    header = Job.objects.exclude(id=callback.id).order_by("id").first()
    strand(header.id)
    assert store.job_stranded_many(limit=10) == [header.id]
    Handoffs(store).run_once(timezone.now())
    assert callback.refresh().status == "cancelled"
    assert str(header.id) in callback.error["message"]
