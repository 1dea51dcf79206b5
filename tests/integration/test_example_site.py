"""The demo site's page enqueues with .delay()/.apply_async() in the view and shows the job's progress."""

from __future__ import annotations

import pytest

from djtasks.models import Job
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)


def test_form_enqueues_and_job_page_shows_status_then_result(client):
    response = client.post("/", {"job": "add", "a": 2, "b": 40, "seconds": 0, "countdown": 0})
    assert response.status_code == 302
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.id}/"
    page = client.get(response["Location"])
    assert b'class="status queued"' in page.content and b'http-equiv="refresh"' in page.content
    assert drain() == 1
    page = client.get(response["Location"])
    assert b'<code id="result">42</code>' in page.content and b"http-equiv" not in page.content
    assert b"example_site.demo.tasks.add" in client.get("/").content


def test_failed_job_page_shows_escaped_error_and_traceback(client):
    client.post("/", {"job": "fail", "a": 1, "b": 2, "seconds": 0, "countdown": 0})
    drain()
    page = client.get(f"/jobs/{Job.objects.get().id}/").content.decode()
    assert "builtins.ValueError" in page and "you asked for it: 1 2" in page and "Traceback" in page


def test_unknown_job_page_is_404(client):
    assert client.get("/jobs/01a1fde9-3fc8-7e11-babf-b28ed85aa65a/").status_code == 404


def test_invalid_form_is_redisplayed(client):
    response = client.post("/", {"job": "add", "a": "x", "b": 1, "seconds": -1, "countdown": 0})
    assert response.status_code == 200 and not Job.objects.exists()


def test_chord_page_starts_a_chord_and_shows_it_until_the_callback_ran(client):
    assert b"chord-form" in client.get("/chord/").content
    response = client.post("/chord/", {"size": 3, "seconds": 0})
    assert response.status_code == 302
    callback = Job.objects.get(name="example_site.demo.tasks.summarize")
    assert response["Location"] == f"/chord/{callback.id}/"
    page = client.get(response["Location"]).content.decode()
    assert page.count('class="status queued"') == 3 and 'class="status waiting"' in page and "http-equiv" in page
    drain()
    page = client.get(response["Location"]).content.decode()
    assert "&#x27;sum&#x27;: 14" in page and "10/10" in page and "http-equiv" not in page
    assert client.get("/chord/01a1fde9-3fc8-7e11-babf-b28ed85aa65a/").status_code == 404
