"""The queue dashboard's flow-control parts: limits and fullness per queue, pause/resume buttons behind a
permission, and the limits form with its validation errors."""

from __future__ import annotations

import pytest

from djtasks.models import Queue
from djtasks.queues import set_queue_options
from tests.integration.admin_helpers import make_job, staff_user

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/djtasks/queuedashboard/"


def row_html(html: str, queue: str) -> str:
    return html.split(f'<tr data-queue="{queue}">')[1].split("</tr>")[0]


def test_dashboard_shows_limit_fullness_and_paused(admin_client):
    set_queue_options("slow", concurrency=3, rate_limit="60/s", paused=True)
    make_job("running", queue="slow")
    make_job("running", queue="slow")
    html = admin_client.get(DASHBOARD).content.decode()
    slow = row_html(html, "slow")
    assert "3 at once, 60/s" in slow and "(2 of 3)" in slow
    assert "paused" in slow and 'id="djtasks-resume-slow"' in slow
    default = row_html(html, "default")
    assert "none" in default and "paused" not in default and 'id="djtasks-pause-default"' in default


def test_pause_and_resume_buttons_need_the_permission(client):
    viewer = staff_user("viewer", "view_job")
    client.force_login(viewer)
    html = client.get(DASHBOARD).content.decode()
    assert "djtasks-pause-default" not in html and "djtasks-edit-limits" not in html
    assert client.post(f"{DASHBOARD}default/pause/").status_code == 403
    assert not Queue.objects.exists()

    operator = staff_user("operator", "view_job", "pause_queue")
    client.force_login(operator)
    assert 'id="djtasks-pause-default"' in client.get(DASHBOARD).content.decode()
    assert client.get(f"{DASHBOARD}default/pause/").status_code == 405  # a GET changes nothing
    response = client.post(f"{DASHBOARD}default/pause/")
    assert response.status_code == 302
    assert Queue.objects.get(name="default").paused
    client.post(f"{DASHBOARD}default/resume/")
    assert not Queue.objects.get(name="default").paused
    response = client.post(f"{DASHBOARD}emails/pause/", follow=True)
    assert "nknown queue &#x27;emails&#x27;" in response.content.decode()


def test_limits_form_saves_and_shows_errors(client):
    user = staff_user("tuner", "view_job", "change_queue")
    client.force_login(user)
    url = f"{DASHBOARD}slow/limits/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"concurrency": "0", "rate_limit": "100 per minute"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "queue &#x27;slow&#x27;: concurrency must be a positive int or none, got 0" in html
    assert "&#x27;100 per minute&#x27;" in html
    assert not Queue.objects.exists()  # nothing changed
    response = client.post(url, {"concurrency": "4", "rate_limit": "100/m"})
    assert response.status_code == 302
    row = Queue.objects.get(name="slow")
    assert (row.concurrency, row.rate_limit, row.paused, sorted(row.overrides)) == (
        4,
        "100/m",
        False,
        ["concurrency", "rate_limit"],
    )
    # Unchanged fields stay as they are (not overridden); a reset hands everything back to the settings.
    client.post(url, {"concurrency": "4", "rate_limit": "100/m", "paused": "on"})
    row.refresh_from_db()
    assert row.paused and sorted(row.overrides) == ["concurrency", "paused", "rate_limit"]
    client.post(url, {"reset": "on"})
    row.refresh_from_db()
    assert (row.concurrency, row.rate_limit, row.paused, row.overrides) == (None, "", False, [])
    assert client.get(f"{DASHBOARD}emails/limits/").status_code == 404


def test_limits_form_needs_the_permission(client):
    client.force_login(staff_user("viewer", "view_job", "pause_queue"))
    assert client.get(f"{DASHBOARD}slow/limits/").status_code == 403
    assert client.post(f"{DASHBOARD}slow/limits/", {"concurrency": "2"}).status_code == 403
    assert not Queue.objects.exists()
