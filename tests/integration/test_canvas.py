"""Workflows in the database: chain, group, chord, nesting, failure propagation, rollback (real Postgres)."""

from __future__ import annotations

import pytest
from django.db import transaction

from djtasks import GroupResult, JobCancelled, JobFailed, JobResult, JobStatus, chain, chord, group
from djtasks.models import Group, Job
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(*results):
    return [r.refresh().status for r in results]


def test_chain_passes_values_and_pipe_is_the_same():
    last = chain(tasks.add.s(1, 2), tasks.add.s(10), tasks.double.s()).delay()
    assert last.refresh().status == JobStatus.WAITING
    drain()
    assert last.get(timeout=5) == 26
    second = last.parent
    assert isinstance(second, JobResult) and second.result == 13
    assert second.parent.result == 3 and second.parent.parent is None
    piped = (tasks.add.s(1, 2) | tasks.add.s(10) | tasks.double.s()).delay()
    drain()
    assert piped.get(timeout=5) == 26


def test_si_ignores_the_previous_result():
    last = (tasks.add.s(1, 2) | tasks.add.si(5, 5)).delay()
    drain()
    assert last.get(timeout=5) == 10


def test_waiting_steps_are_waiting_not_queued():
    last = (tasks.add.s(1, 2) | tasks.add.s(3)).delay()
    first = last.parent
    assert statuses(first, last) == ["queued", "waiting"]
    assert first.children == [last]


def test_failure_ends_the_chain_naming_the_failed_job():
    last = (tasks.add.s(1, 2) | tasks.boom.si("bad") | tasks.add.s(1) | tasks.add.s(2)).delay()
    third = last.parent
    failed = third.parent
    drain()
    assert statuses(failed.parent, failed, third, last) == ["succeeded", "failed", "cancelled", "cancelled"]
    for r in (third, last):
        assert str(failed.id) in r.error["message"] and "failed" in r.error["message"]
    with pytest.raises(JobCancelled, match=str(failed.id)):
        last.get(timeout=1)


def test_cancelling_a_step_cancels_the_rest():
    last = (tasks.add.s(1, 2) | tasks.add.s(1) | tasks.add.s(2)).delay()
    first = last.parent.parent
    assert first.cancel()
    assert statuses(first, last.parent, last) == ["cancelled"] * 3
    assert "was cancelled" in last.error["message"] and str(first.id) in last.error["message"]
    assert drain() == 0


def test_group_result():
    g = group(tasks.add.s(i, i) for i in range(5)).delay()
    assert isinstance(g, GroupResult) and len(g.results) == 5 and not g.ready()
    drain()
    again = GroupResult(g.id)
    assert again.ready() and again.successful() and again.completed_count() == 5
    assert again.get(timeout=5) == [0, 2, 4, 6, 8]
    assert [r.group for r in again.results] == [again] * 5


def test_group_get_raises_for_the_first_failure():
    g = group(tasks.add.s(1, 1), tasks.boom.s("x"), tasks.boom.s("y")).delay()
    drain()
    assert g.ready() and not g.successful() and g.failed()
    with pytest.raises(JobFailed, match="x"):
        g.get(timeout=5)
    values = g.get(timeout=5, propagate=False)
    assert values[0] == 2 and values[1]["message"] == "x"


def test_group_cancel():
    g = group(tasks.add.s(1, 1), tasks.add.s(2, 2)).delay()
    assert g.cancel() == 2
    assert g.ready() and statuses(*g.results) == ["cancelled", "cancelled"]


@pytest.mark.parametrize("n", [3, 500])
def test_chord(n):
    callback = chord([tasks.add.s(i, 1) for i in range(n)], tasks.total.s(extra=1000)).delay()
    header = callback.parent
    assert isinstance(header, GroupResult) and header.total == n
    assert callback.refresh().status == JobStatus.WAITING
    drain(limit=50)
    assert callback.get(timeout=5) == sum(range(1, n + 1)) + 1000
    assert header.remaining == 0
    assert Job.objects.get(id=callback.id).args[0] == list(range(1, n + 1))


def test_chord_header_failure_cancels_the_callback_others_still_run():
    callback = chord([tasks.add.s(1, 1), tasks.boom.s("header"), tasks.add.s(2, 2)], tasks.total.s()).delay()
    header = callback.parent
    drain()
    bad = header.results[1]
    assert statuses(*header.results) == ["succeeded", "failed", "succeeded"]
    assert callback.refresh().status == JobStatus.CANCELLED
    assert str(bad.id) in callback.error["message"]
    assert header.remaining == 1


def test_chord_callback_names_every_failed_header_job():
    last = chord(
        [tasks.boom.s("one"), tasks.add.s(1, 1), tasks.boom.s("two")], tasks.total.s() | tasks.double.s()
    ).delay()
    first_bad, _, second_bad = last.parent.parent.results
    drain(limit=1)  # one job per batch: the two failures reach the callback in separate transactions
    for step in (last.parent, last):
        message = step.refresh().error["message"]
        assert step.status == JobStatus.CANCELLED and len(step.errors) == 1
        assert str(first_bad.id) in message and str(second_bad.id) in message, message


def test_empty_chord_header_runs_the_callback_at_once():
    callback = chord([], tasks.total.s(extra=7)).delay()
    assert callback.refresh().status == JobStatus.QUEUED
    drain()
    assert callback.get(timeout=5) == 7


def test_group_in_chain_is_a_chord():
    last = (tasks.add.s(1, 1) | group(tasks.add.s(10), tasks.add.s(20)) | tasks.total.s()).delay()
    drain()
    assert last.get(timeout=5) == 12 + 22
    assert last.parent.get(timeout=1) == [12, 22]


def test_chain_as_group_member():
    g = group(tasks.add.s(1, 1) | tasks.double.s(), tasks.add.s(5, 5)).delay()
    drain()
    assert g.get(timeout=5) == [4, 10]


def test_chord_with_chain_callback_names_the_first_failure_two_steps_on():
    last = chord([tasks.boom.s("head"), tasks.add.s(1, 1)], tasks.total.s() | tasks.double.s()).delay()
    drain()
    bad = last.parent.parent.results[0]
    assert statuses(last.parent, last) == ["cancelled", "cancelled"]
    assert str(bad.id) in last.error["message"]


def test_chord_with_chain_callback_and_chain_members():
    last = chord([tasks.add.s(1, 1) | tasks.double.s(), tasks.add.s(2, 2)], tasks.total.s() | tasks.double.s()).delay()
    drain()
    assert last.get(timeout=5) == (4 + 4) * 2


def test_rollback_leaves_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        chord([tasks.add.s(1, 1)] * 3, tasks.total.s()).delay()
        (tasks.add.s(1, 2) | tasks.add.s(3)).delay()
        raise RuntimeError("roll back")
    assert Job.objects.count() == 0 and Group.objects.count() == 0


def test_workflow_inside_a_transaction_exists_on_commit():
    with transaction.atomic():
        last = (tasks.add.s(1, 2) | tasks.add.s(3)).delay()
    drain()
    assert last.get(timeout=5) == 6


def test_apply_async_options_on_a_composition():
    last = (tasks.add.s(1, 2) | tasks.add.s(3)).apply_async(countdown=60, queue="other", priority=5)
    first = last.parent
    rows = {j.id: j for j in Job.objects.all()}
    assert rows[first.id].queue == rows[last.id].queue == "other"
    assert rows[first.id].priority == 5 and drain() == 0  # the first step waits 60 s


def test_bad_input():
    with pytest.raises(TypeError, match="chain item 1"):
        chain(tasks.add.s(1, 2), lambda: 1)
    with pytest.raises(TypeError, match="group item 0"):
        group([42])
    with pytest.raises(TypeError, match=r"args\[0\]"):
        tasks.add.s(object(), 1)
    with pytest.raises(TypeError, match="group"):
        group(group(tasks.add.s(1, 1)), tasks.add.s(1, 1))
    with pytest.raises(TypeError, match="ends with a group"):
        group(
            chord([tasks.add.s(1, 1)], tasks.add.s(1) | group(tasks.add.s(1), tasks.add.s(2))), tasks.add.s(1, 1)
        ).delay()
    same = tasks.add.s(1, 1).set(job_id="01a1fde9-3fc8-7e11-babf-b28ed85aa65a")
    with pytest.raises(ValueError, match="used twice"):
        group(same, same).delay()
    with pytest.raises(TypeError, match="unknown option"):
        chain(tasks.add.s(1, 2)).apply_async(bogus=1)
    assert Job.objects.count() == 0


def test_retry_skips_a_step_that_never_got_its_input_and_delete_cancels_what_follows():
    from djtasks.operations import delete_jobs, retry_jobs

    last = (tasks.boom.s("first") | tasks.add.s(1)).delay()
    first = last.parent
    drain()
    assert statuses(first, last) == ["failed", "cancelled"]
    assert retry_jobs([first.id, last.id]) == {first.id}
    other = (tasks.add.s(1, 1) | tasks.add.s(1) | tasks.add.s(1)).delay()
    assert delete_jobs([other.parent.parent.id]) == {other.parent.parent.id}
    assert statuses(other.parent, other) == ["cancelled", "cancelled"]


def test_an_expired_step_ends_the_chain():
    import time

    from djtasks.ids import uuid7
    from djtasks.worker.ledger import Ledger
    from djtasks.worker.producer import Producer, ledger_capacity

    last = (tasks.add.s(1, 1) | tasks.add.s(1)).apply_async(expires=0.2)
    time.sleep(0.3)
    submitted = []
    producer = Producer(worker_id=uuid7(), queues=["default"], slots=4, submit=submitted.extend, poll_interval=1,
                        listen=False, ledger=Ledger(ledger_capacity(4)))  # fmt: skip
    try:
        producer._claim_once()
    finally:
        producer.db.close()
    assert not submitted
    assert statuses(last.parent, last) == ["cancelled", "cancelled"]
    assert "was cancelled" in last.error["message"] and str(last.parent.id) in last.error["message"]


def test_chain_ending_with_a_group_returns_its_group_result():
    g = (tasks.add.s(1, 1) | group(tasks.add.s(1), tasks.double.s())).delay()
    assert isinstance(g, GroupResult)
    drain()
    assert g.get(timeout=5) == [3, 4]


def test_group_cancel_reaches_the_first_steps_of_chain_members_and_the_callback():
    callback = chord([tasks.add.s(1, 1) | tasks.double.s(), tasks.add.s(2, 2)], tasks.total.s()).delay()
    header = callback.parent
    first_step = header.results[0].parent
    assert header.cancel() == 3
    assert statuses(first_step, *header.results, callback) == ["cancelled"] * 4
    assert drain() == 0


def test_bulk_delay_of_a_unique_job_dedupes():
    results = tasks.unique_add.bulk_delay([(1, 1), (1, 1), (2, 2)])
    assert [r.deduplicated for r in results] == [False, True, False] and results[0].id == results[1].id
    assert Job.objects.count() == 2
