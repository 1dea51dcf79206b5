"""The jobs admin through Django's test client: list, filters, search, detail page, escaping, read-only."""

from __future__ import annotations

import re
import uuid

import pytest

from djtasks.admin import pagination
from djtasks.models import Job, Worker
from tests.integration.admin_helpers import ERROR, make_job, staff_user

pytestmark = pytest.mark.django_db

LIST = "/admin/djtasks/job/"


def listed_ids(response) -> set[str]:
    """Ids of the jobs in the list's rows (their links to the detail page)."""
    table = response.content.decode().split('id="result_list"')[-1].split("</table>")[0]
    return set(re.findall(r'href="/admin/djtasks/job/([0-9a-f-]{36})/change/', table))


@pytest.fixture
def jobs():
    from datetime import timedelta

    from django.utils import timezone

    return {
        "queued": make_job("queued"),
        "scheduled": make_job("queued", run_at=timezone.now() + timedelta(hours=1)),
        "running": make_job("running", queue="other", name="tests.testapp.tasks.on_other"),
        "succeeded": make_job("succeeded"),
        "failed": make_job("failed", name="tests.testapp.tasks.boom"),
        "cancelled": make_job("cancelled", queue="slow"),
    }


def test_changelist_lists_jobs_newest_first_with_their_columns(admin_client, jobs):
    response = admin_client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert listed_ids(response) == {str(j.id) for j in jobs.values()}
    newest_first = sorted((j.id for j in jobs.values()), reverse=True)  # UUIDv7: id order is enqueue order
    positions = [html.index(str(job_id)) for job_id in newest_first]
    assert positions == sorted(positions), "newest first"
    for header in ("Job", "Status", "Queue", "Priority", "Attempts", "Enqueued", "Finished", "Run time"):
        assert f">{header}<" in html or f">{header}</a>" in html, header
    assert "6 jobs" in html and "is an estimate" not in html
    assert 'class="djtasks-status djtasks-failed">failed<' in html
    assert ">scheduled<" in html, "a queued job due later shows as scheduled"
    assert "2.0 s" in html, "run time of the finished jobs"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=queued", {"queued", "scheduled"}),
        ("status=due", {"queued"}),
        ("status=scheduled", {"scheduled"}),
        ("status=running", {"running"}),
        ("status=succeeded", {"succeeded"}),
        ("status=failed", {"failed"}),
        ("status=cancelled", {"cancelled"}),
        ("queue=other", {"running"}),
        ("queue=slow", {"cancelled"}),
        ("name=tests.testapp.tasks.boom", {"failed"}),
        ("status=queued&queue=default", {"queued", "scheduled"}),
        ("q=boom", {"failed"}),
        ("q=on_other", {"running"}),
    ],
)
def test_filters_and_search(admin_client, jobs, query, expected):
    response = admin_client.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert listed_ids(response) == {str(jobs[k].id) for k in expected}


def test_search_by_id_finds_exactly_that_job(admin_client, jobs):
    response = admin_client.get(LIST, {"q": f"  {jobs['failed'].id}  "})
    assert listed_ids(response) == {str(jobs["failed"].id)}
    assert listed_ids(admin_client.get(LIST, {"q": str(uuid.uuid4())})) == set()


def test_filter_choices_come_from_settings_and_registry(admin_client, jobs):
    html = admin_client.get(LIST).content.decode()
    for queue in ("default", "other", "slow"):
        assert f"?queue={queue}" in html
    assert "?name=tests.testapp.tasks.flaky" in html, "a registered job with no rows is still offered"


def test_long_lists_show_an_estimated_count(admin_client, jobs, monkeypatch):
    monkeypatch.setattr(pagination, "EXACT_COUNT_BELOW", 0)
    for url in (LIST, f"{LIST}?status=failed"):
        html = admin_client.get(url).content.decode()
        assert "The number of jobs is an estimate" in html, url


def test_detail_page_shows_everything_stored(admin_client):
    worker = Worker.objects.create(
        id=uuid.uuid4(),
        hostname="box",
        pid=42,
        queues=["default"],
        concurrency=4,
        started_at="2026-01-01T00:00:00Z",
        heartbeat_at="2026-01-01T00:00:00Z",
    )
    group = uuid.uuid4()
    next_step = make_job("cancelled", name="tests.testapp.tasks.add")
    second = {**ERROR, "attempt": 2, "message": "second failure", "traceback": "Traceback: line two\nKeyError: 'x'"}
    job = make_job(
        "failed",
        args=[7, "seven"],
        kwargs={"mode": "fast"},
        attempt=2,
        max_attempts=2,
        errors=[ERROR, second],
        worker_id=worker.id,
        group_id=group,
        progress={"done": 3, "total": 10},
        on_success=[{"id": str(next_step.id), "pass": True}],
    )
    response = admin_client.get(f"{LIST}{job.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "&quot;seven&quot;" in html and "&quot;mode&quot;: &quot;fast&quot;" in html
    assert "Attempt 2" in html and "Attempt 1" in html and "second failure" in html
    assert "KeyError: &#x27;x&#x27;" in html and 'File "tasks.py", line 3' in html.replace("&quot;", '"')
    assert "&quot;total&quot;: 10" in html, "progress"
    assert f"/admin/djtasks/worker/{worker.id}/change/" in html and "box:42" in html
    assert f"?group_id={group}" in html
    assert "Next step" in html and f"/admin/djtasks/job/{next_step.id}/change/" in html
    assert "2 of 2" in html
    # the group link works
    assert listed_ids(admin_client.get(f"{LIST}?group_id={group}")) == {str(job.id)}


def test_detail_of_a_missing_job_redirects_with_a_message(admin_client):
    response = admin_client.get(f"{LIST}{uuid.uuid4()}/change/", follow=True)
    assert response.status_code == 200 and "exist. Perhaps it was deleted?" in response.content.decode()


def test_stored_data_is_escaped_everywhere(admin_client):
    hostile = "<script>alert(1)</script>"
    job = make_job(
        "failed",
        name="<img src=x onerror=alert(2)>",
        queue="default",
        kwargs={"note": hostile},
        args=[hostile],
        errors=[{**ERROR, "message": hostile, "traceback": hostile, "type": "<b>Type</b>"}],
        result={"html": hostile},
        unique_key=hostile,
    )
    for url in (LIST, f"{LIST}{job.id}/change/", f"{LIST}?q=onerror", "/admin/djtasks/queuedashboard/"):
        html = admin_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html, url
        assert "<img src=x onerror" not in html, url
        assert "<b>Type</b>" not in html, url
    detail = admin_client.get(f"{LIST}{job.id}/change/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(2)&gt;" in detail
    assert "&lt;b&gt;Type&lt;/b&gt;" in detail


def test_jobs_are_read_only(admin_client, jobs):
    job = jobs["queued"]
    assert admin_client.get(f"{LIST}add/").status_code == 403
    response = admin_client.post(f"{LIST}{job.id}/change/", {"name": "changed", "status": "succeeded"})
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.name == "tests.testapp.tasks.add" and job.status == "queued"
    html = admin_client.get(LIST).content.decode()
    assert "Add job" not in html and 'name="_save"' not in html


def test_view_permission_is_needed(client, jobs):
    client.force_login(staff_user("nobody"))
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{jobs['failed'].id}/change/").status_code == 403
    client.force_login(staff_user("viewer", "view_job"))
    response = client.get(LIST)
    assert response.status_code == 200 and listed_ids(response) == {str(j.id) for j in jobs.values()}
    detail = client.get(f"{LIST}{jobs['failed'].id}/change/").content.decode()
    assert 'id="djtasks-retry_selected"' not in detail, "no retry button without the permission"


def test_delete_view_of_one_job_and_running_jobs_cannot_be_deleted(client, jobs):
    client.force_login(staff_user("deleter", "view_job", "delete_job"))
    running = jobs["running"]
    assert client.get(f"{LIST}{running.id}/delete/").status_code == 403
    assert "deletelink" not in client.get(f"{LIST}{running.id}/change/").content.decode()
    failed = jobs["failed"]
    assert client.post(f"{LIST}{failed.id}/delete/", {"post": "yes"}).status_code == 302
    assert not Job.objects.filter(id=failed.id).exists()
