"""The jobs admin's actions and the permissions guarding each: retry, cancel, requeue, delete."""

from __future__ import annotations

import pytest

from djtasks.models import Job
from tests.integration.admin_helpers import action, make_job, messages_of, staff_user

pytestmark = pytest.mark.django_db

LIST = "/admin/djtasks/job/"

# action name -> the permission it needs
ACTIONS = {
    "retry_selected": "retry_job",
    "cancel_selected": "cancel_job",
    "requeue_selected": "requeue_job",
    "delete_selected": "delete_job",
}


def offered_actions(client) -> set[str]:
    html = client.get(LIST).content.decode()
    return {name for name in ACTIONS if f'value="{name}"' in html}


def test_each_action_is_offered_only_with_its_permission(client):
    make_job("failed")
    client.force_login(staff_user("viewer", "view_job"))
    assert offered_actions(client) == set()
    for name, codename in ACTIONS.items():
        client.force_login(staff_user(f"only-{codename}", "view_job", codename))
        assert offered_actions(client) == {name}, codename
    assert client.get(LIST).content.decode().count('value="delete_selected"') == 1, "ours replaces Django's"


@pytest.mark.parametrize("name", list(ACTIONS))
def test_without_the_permission_an_action_changes_nothing(client, name):
    failed, queued = make_job("failed"), make_job("queued")
    others = [c for c in ACTIONS.values() if c != ACTIONS[name]]
    client.force_login(staff_user("staff", "view_job", *others))
    response = action(client, name, failed, queued, post="yes")
    assert response.status_code == 200
    assert "No action selected." in messages_of(response)
    assert Job.objects.get(id=failed.id).status == "failed"
    assert Job.objects.get(id=queued.id).status == "queued"
    assert Job.objects.count() == 2


def test_retry_with_permission_requeues_failed_and_cancelled_only(client):
    failed = make_job("failed", attempt=1, max_attempts=1, result=None)
    cancelled = make_job("cancelled")
    succeeded = make_job("succeeded")
    client.force_login(staff_user("retrier", "view_job", "retry_job"))
    response = action(client, "retry_selected", failed, cancelled, succeeded)
    assert messages_of(response) == [
        "Retried 2 job(s): queued again.",
        "1 job(s) left alone: only failed or cancelled jobs can be retried "
        "(and not while another active job holds their unique key).",
    ]
    failed.refresh_from_db()
    assert failed.status == "queued" and failed.finished_at is None and failed.started_at is None
    assert failed.attempt == 1 and failed.max_attempts == 2, "one more attempt is allowed"
    assert len(failed.errors) == 1, "the error history stays"
    assert Job.objects.get(id=cancelled.id).status == "queued"
    assert Job.objects.get(id=succeeded.id).status == "succeeded"


def test_cancel_with_permission(client):
    queued, running, succeeded = make_job("queued"), make_job("running"), make_job("succeeded")
    client.force_login(staff_user("canceller", "view_job", "cancel_job"))
    response = action(client, "cancel_selected", queued, running, succeeded)
    assert messages_of(response) == [
        "Cancelled 1 queued job(s); asked the workers of 1 running job(s) to stop them.",
        "1 job(s) had already finished and were left alone.",
    ]
    assert Job.objects.get(id=queued.id).status == "cancelled"
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested
    html = client.get(LIST).content.decode()
    assert ">cancelling<" in html, "a running job asked to stop shows it"


def test_requeue_with_permission_copies_finished_jobs(client):
    succeeded = make_job("succeeded", args=[4, 5], priority=7, queue="other")
    running = make_job("running")
    client.force_login(staff_user("requeuer", "view_job", "requeue_job"))
    response = action(client, "requeue_selected", succeeded, running)
    assert messages_of(response)[0] == "Queued 1 new job(s) copied from the selected ones."
    copy = Job.objects.exclude(id__in=[succeeded.id, running.id]).get()
    assert (copy.status, copy.name, copy.args, copy.priority, copy.queue, copy.attempt) == (
        "queued",
        succeeded.name,
        [4, 5],
        7,
        "other",
        0,
    )
    assert copy.id > succeeded.id and copy.errors == [] and copy.result is None
    assert Job.objects.get(id=succeeded.id).status == "succeeded", "the original is untouched"


def test_delete_asks_for_confirmation_then_keeps_running_jobs(client):
    failed, running = make_job("failed"), make_job("running")
    client.force_login(staff_user("deleter", "view_job", "delete_job"))
    confirm = action(client, "delete_selected", failed, running)
    html = confirm.content.decode()
    assert "Delete 2 jobs" in html and "1 of them is running and will be kept" in html
    assert Job.objects.count() == 2, "nothing is deleted before confirming"
    response = action(client, "delete_selected", failed, running, post="yes")
    assert messages_of(response) == ["Deleted 1 job(s).", "1 running job(s) not deleted: cancel them first."]
    assert list(Job.objects.values_list("id", flat=True)) == [running.id]


def test_delete_across_all_pages_of_a_filter(client):
    keep = make_job("succeeded")
    doomed = [make_job("failed") for _ in range(3)]
    client.force_login(staff_user("deleter", "view_job", "delete_job"))
    data = {"action": "delete_selected", "index": 0, "select_across": 1, "_selected_action": [doomed[0].id]}
    confirm = client.post(f"{LIST}?status=failed", data)
    assert "Delete 3 jobs" in confirm.content.decode()
    response = client.post(f"{LIST}?status=failed", {**data, "post": "yes"}, follow=True)
    assert messages_of(response) == ["Deleted 3 job(s)."]
    assert list(Job.objects.values_list("id", flat=True)) == [keep.id]


def test_detail_page_buttons_follow_permissions_and_return_to_the_job(client):
    failed = make_job("failed")
    client.force_login(staff_user("viewer", "view_job"))
    html = client.get(f"{LIST}{failed.id}/change/").content.decode()
    assert "djtasks-retry_selected" not in html and "djtasks-requeue_selected" not in html
    client.force_login(staff_user("operator", "view_job", "retry_job", "cancel_job", "requeue_job"))
    html = client.get(f"{LIST}{failed.id}/change/").content.decode()
    assert 'id="djtasks-retry_selected"' in html and 'id="djtasks-requeue_selected"' in html
    assert 'id="djtasks-cancel_selected"' not in html, "a failed job cannot be cancelled"
    response = action(client, "retry_selected", failed, _from_detail="1")
    assert response.redirect_chain[-1][0] == f"{LIST}{failed.id}/change/"
    assert Job.objects.get(id=failed.id).status == "queued"
    assert 'id="djtasks-cancel_selected"' in response.content.decode(), "now queued: it can be cancelled"


def test_requeue_from_the_detail_page_opens_the_copy(admin_client):
    done = make_job("succeeded")
    response = action(admin_client, "requeue_selected", done, _from_detail="1")
    copy = Job.objects.exclude(id=done.id).get()
    assert response.redirect_chain[-1][0] == f"{LIST}{copy.id}/change/"
