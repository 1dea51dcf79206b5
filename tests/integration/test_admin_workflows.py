"""The jobs admin shows workflows: parent, next step, group and chord state with links; filter by group;
progress of running jobs."""

from __future__ import annotations

import pytest

from djtasks import chord
from djtasks.models import Job
from tests.conftest import drain
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/djtasks/job/"


def detail(client, job_id) -> str:
    response = client.get(f"{LIST}{job_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_detail_shows_parent_next_step_and_chord_state(admin_client):
    last = chord([tasks.add.s(1, 1), tasks.boom.s("no"), tasks.add.s(2, 2)], tasks.total.s() | tasks.double.s()).delay()
    callback = last.parent
    header = callback.parent
    members = header.results
    html = detail(admin_client, callback.id)
    assert "Waits for group" in html and f"?group_id={header.id}" in html
    assert "0 of 3 succeeded, 3 remaining" in html
    assert f"/admin/djtasks/job/{last.id}/change/" in html, "next step linked"
    assert ">waiting<" in html
    drain()
    html = detail(admin_client, members[0].id)
    assert "Member of group" in html and "2 of 3 succeeded, 1 remaining" in html
    assert "1 failed or cancelled" in html and f"/admin/djtasks/job/{members[1].id}/change/" in html
    assert f"/admin/djtasks/job/{callback.id}/change/" in html, "the chord callback linked from a member"
    html = detail(admin_client, last.id)
    assert f"/admin/djtasks/job/{callback.id}/change/" in html and "Parent" in html


def test_list_filters_by_group_and_status_waiting(admin_client):
    callback = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.total.s()).delay()
    tasks.add.delay(5, 5)
    header = callback.parent
    html = admin_client.get(f"{LIST}?group_id={header.id}").content.decode()
    for member in header.results:
        assert str(member.id) in html
    assert str(callback.id) not in html and "2 jobs" in html
    html = admin_client.get(f"{LIST}?status=waiting").content.decode()
    assert str(callback.id) in html and "1 job" in html
    assert admin_client.get(f"{LIST}?group_id=nonsense").status_code == 200


def test_progress_of_running_jobs_in_the_list(admin_client):
    job = tasks.counts.delay(10)
    Job.objects.filter(id=job.id).update(status="running", progress={"done": 4, "total": 10})
    html = admin_client.get(LIST).content.decode()
    assert "4/10 (40%)" in html
    html = detail(admin_client, job.id)
    assert "Progress" in html and "(running)" in html


def test_dashboard_and_status_count_waiting_steps(admin_client):
    import io
    import json

    from django.core.management import call_command

    (tasks.add.s(1, 1) | tasks.add.s(1) | tasks.add.s(2)).apply_async(queue="other")
    html = admin_client.get("/admin/djtasks/queuedashboard/").content.decode()
    row = html.split('data-queue="other"')[1].split("</tr>")[0]
    assert '<td class="num waiting"><a href="/admin/djtasks/job/?status=waiting&amp;queue=other">2</a>' in row
    out = io.StringIO()
    call_command("djtasks", "status", "--json", stdout=out)
    other = next(q for q in json.loads(out.getvalue())["queues"] if q["name"] == "other")
    assert other["waiting"] == 2 and other["queued"] == 1
    text = io.StringIO()
    call_command("djtasks", "status", stdout=text)
    header, *rows = [line.split() for line in text.getvalue().splitlines() if line.strip()][1:]
    assert header[-1] == "waiting"
    assert next(r for r in rows if r[0] == "other")[-1] == "2"
