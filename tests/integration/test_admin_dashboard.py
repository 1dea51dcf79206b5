"""The queue dashboard page, the workers admin and ``manage.py djtasks status``."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from djtasks.models import Worker
from tests.integration.admin_helpers import make_job, staff_user

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/djtasks/queuedashboard/"


@pytest.fixture
def scene():
    """Two workers (one dead), jobs in every state across queues."""
    now = timezone.now()
    alive = Worker.objects.create(
        id=uuid.uuid4(), hostname="web-1", pid=101, queues=["default", "other"], concurrency=4,
        started_at=now - timedelta(hours=1), heartbeat_at=now,
    )  # fmt: skip
    dead = Worker.objects.create(
        id=uuid.uuid4(), hostname="web-2", pid=202, queues=["slow"], concurrency=2,
        started_at=now - timedelta(hours=2), heartbeat_at=now - timedelta(minutes=10),
    )  # fmt: skip
    for _ in range(3):
        make_job("queued", run_at=now - timedelta(minutes=2))
    make_job("queued", queue="other", run_at=now + timedelta(hours=1))
    running = make_job("running", worker_id=alive.id)
    for _ in range(4):
        make_job("succeeded", finished_at=now - timedelta(minutes=10))
    make_job("failed", queue="other", finished_at=now - timedelta(minutes=5))
    return {"alive": alive, "dead": dead, "running": running}


def cell(html: str, queue: str, column: str) -> str:
    row = html.split(f'<tr data-queue="{queue}">')[1].split("</tr>")[0]
    return row.split(f'class="num {column}">')[1].split("</a>")[0].rsplit(">", 1)[1]


def test_dashboard_shows_each_queue(admin_client, scene):
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert [cell(html, "default", c) for c in ("queued", "scheduled", "running", "failed", "succeeded")] == [
        "3",
        "0",
        "1",
        "0",
        "4",
    ]
    assert [cell(html, "other", c) for c in ("queued", "scheduled", "failed")] == ["0", "1", "1"]
    assert 'id="djtasks-total-queued">3<' in html and 'id="djtasks-workers-alive">1<' in html
    assert "1 dead" in html and "web-1:101" in html and "web-2:202" in html
    assert html.count('<svg class="djtasks-chart"') == 5, "one chart per queue, the total row's, and the big one"
    assert "4 succeeded, 0 failed" in html, "bar tooltips"
    assert "?status=due&amp;queue=default" in html, "numbers link to the filtered job list"
    assert 'data-refresh="5"' in html and "fetch(url" in html
    assert "<script src=" not in html.split('id="content-main"')[1], "no external script on the page"


def test_dashboard_partial_is_the_body_only_and_refresh_is_bounded(admin_client, scene):
    html = admin_client.get(DASHBOARD, {"partial": "1"}).content.decode()
    assert html.lstrip().startswith('<div class="cards">') and "<html" not in html
    assert 'data-refresh="300"' in admin_client.get(DASHBOARD, {"refresh": "9999"}).content.decode()
    assert 'data-refresh="5"' in admin_client.get(DASHBOARD, {"refresh": "x"}).content.decode()


def test_dashboard_is_linked_from_the_app_index_for_job_viewers_only(client, scene):
    assert client.get(DASHBOARD).status_code == 302, "anonymous: to the login page"
    client.force_login(staff_user("nobody"))
    assert client.get(DASHBOARD).status_code == 403
    assert "Queue dashboard" not in client.get("/admin/").content.decode()
    client.force_login(staff_user("viewer", "view_job"))
    assert client.get(DASHBOARD).status_code == 200
    for page in ("/admin/", "/admin/djtasks/"):
        html = client.get(page).content.decode()
        assert f'href="{DASHBOARD}"' in html and "Queue dashboard" in html, page
    assert f'href="{DASHBOARD}"' in client.get("/admin/djtasks/job/").content.decode()


def test_workers_list_shows_alive_and_dead_with_current_jobs(admin_client, scene):
    html = admin_client.get("/admin/djtasks/worker/").content.decode().split('id="result_list"')[1].split("</table>")[0]
    assert html.count(">alive<") == 1 and html.count(">dead<") == 1
    assert "default, other" in html and "1 / 4" in html and "0 / 2" in html
    assert f"worker_id={scene['alive'].id}" in html
    alive_only = admin_client.get("/admin/djtasks/worker/", {"alive": "yes"}).content.decode()
    assert "web-1" in alive_only and "web-2" not in alive_only
    dead_only = admin_client.get("/admin/djtasks/worker/", {"alive": "no"}).content.decode()
    assert "web-2" in dead_only and "web-1" not in dead_only
    jobs = admin_client.get("/admin/djtasks/job/", {"status": "running", "worker_id": str(scene["alive"].id)})
    assert str(scene["running"].id) in jobs.content.decode()


def test_worker_detail_lists_its_running_jobs_and_is_read_only(admin_client, scene):
    url = f"/admin/djtasks/worker/{scene['alive'].id}/change/"
    html = admin_client.get(url).content.decode()
    assert f"/admin/djtasks/job/{scene['running'].id}/change/" in html
    assert 'name="_save"' not in html
    assert admin_client.get("/admin/djtasks/worker/add/").status_code == 403
    assert admin_client.get(f"/admin/djtasks/worker/{scene['alive'].id}/delete/").status_code == 403


def test_status_command_prints_the_same_summary(scene):
    out = io.StringIO()
    call_command("djtasks", "status", stdout=out)
    text = out.getvalue()
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["default"][1:6] == ["3", "0", "1", "0", "4"]
    assert lines["other"][1:6] == ["0", "1", "0", "1", "0"]
    assert "workers: 1 alive, 1 dead" in text
    assert "alive web-1:101" in text and "DEAD  web-2:202" in text


def test_status_command_json(scene):
    out = io.StringIO()
    call_command("djtasks", "status", "--json", stdout=out)
    data = json.loads(out.getvalue())
    queues = {q["name"]: q for q in data["queues"]}
    assert (queues["default"]["queued"], queues["default"]["succeeded"], queues["other"]["failed"]) == (3, 4, 1)
    assert queues["other"]["failure_rate"] == 1.0 and queues["default"]["failure_rate"] == 0.0
    assert len(queues["default"]["buckets"]) == 60
    assert data["total"]["running"] == 1 and data["workers_alive"] == 1 and data["workers_dead"] == 1
    assert queues["default"]["oldest_wait_s"] == pytest.approx(120, abs=10)


def test_status_command_needs_a_subcommand():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"(?i)subcommand"):
        call_command("djtasks")
