"""The admin in a real browser: headless Chromium against the example site under gunicorn, with a real worker.

An operator logs in, watches the queue dashboard drain as a worker runs the jobs (the page refreshes itself),
then retries a failed job from the job list and watches it succeed on its detail page. Screenshots of the
dashboard and the job detail page are saved in tests/browser/artifacts/.
"""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from djtasks.cursors import django_store
from djtasks.ids import uuid7
from djtasks.models import Job, Schedule, Worker
from tests.browser.conftest import ARTIFACTS
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]

JOBS = 16
JOB_SECONDS = 0.5  # with 2 threads: about 4 s of draining, several dashboard refreshes


def enqueue(name: str, *args: object, count: int = 1, queue: str = "default") -> list:
    """Insert jobs of the example site by name (this process does not import the example site's jobs)."""
    now = timezone.now()
    rows = [
        {
            "id": uuid7(),
            "name": name,
            "queue": queue,
            "priority": 0,
            "args": json.dumps(list(args)),
            "kwargs": "{}",
            "run_at": now,
            "expires_at": None,
            "max_attempts": 1,
        }
        for _ in range(count)
    ]
    django_store().job_insert_many(now=now, jobs=rows)
    return [row["id"] for row in rows]


def log_in(page, base_url: str) -> None:
    get_user_model().objects.create_superuser("operator", "op@example.com", "s3cret-pw")
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "s3cret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
    assert page.locator("a[href='/admin/djtasks/queuedashboard/']").count() >= 1, "dashboard is in the app list"


def test_operator_watches_the_queue_drain_then_retries_a_failed_job(browser_page, live_site, start_site_worker):
    page = browser_page
    log_in(page, live_site)
    enqueue("example_site.demo.tasks.add", 1, 2, JOB_SECONDS, count=JOBS)
    failing = enqueue("example_site.demo.tasks.fail_once", 20, 22)[0]

    # The dashboard before any worker runs: everything waits.
    page.click("a[href='/admin/djtasks/queuedashboard/']")
    page.wait_for_url("**/queuedashboard/")
    page.goto(f"{live_site}/admin/djtasks/queuedashboard/?refresh=1")
    queued = page.locator("#djtasks-total-queued")
    assert queued.inner_text() == str(JOBS + 1)
    assert page.locator("#djtasks-workers-alive").inner_text() == "0"

    # A worker drains the queue; the page refreshes itself and the numbers follow.
    start_site_worker("--processes", "1", "--threads", "2")
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen.append(int(queued.inner_text()))
        if seen[-1] == 0 and page.locator("#djtasks-total-succeeded").inner_text() == str(JOBS):
            break
        page.wait_for_timeout(200)
    distinct = list(dict.fromkeys(seen))
    assert distinct[0] == JOBS + 1 and distinct[-1] == 0, distinct
    assert len(distinct) >= 3, f"the page showed the queue going down, not just before and after: {distinct}"
    assert page.locator("#djtasks-total-failed").inner_text() == "1"
    assert page.locator("#djtasks-workers-alive").inner_text() == "1"
    assert Worker.objects.count() == 1
    page.locator(".djtasks-bar-succeeded").first.wait_for(state="attached")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # The failed job, from the list: select it, run "Retry", see the message.
    page.goto(f"{live_site}/admin/djtasks/job/?status=failed")
    assert page.locator("#result_list tbody tr").count() == 1
    page.check(f"input[name=_selected_action][value='{failing}']")
    page.select_option("select[name=action]", "retry_selected")
    page.click("button[name=index]")
    page.locator("ul.messagelist").wait_for()
    assert "Retried 1 job(s): queued again." in page.locator("ul.messagelist").inner_text()

    # Its detail page: the worker runs it again and it succeeds; the first attempt's traceback stays.
    wait_until(lambda: Job.objects.get(id=failing).status == "succeeded", timeout=60, message="the retry to succeed")
    page.goto(f"{live_site}/admin/djtasks/job/{failing}/change/")
    assert page.locator("#djtasks-job-status").inner_text().startswith("succeeded")
    assert page.locator("#djtasks-result").inner_text() == "42"
    assert "RuntimeError" in page.locator(".djtasks-error").inner_text()
    assert "fail_once: the first attempt fails on purpose" in page.locator(".djtasks-error pre").inner_text()
    assert "2 of 2" in page.locator(".djtasks-facts").inner_text()
    page.screenshot(path=str(ARTIFACTS / "job_detail.png"), full_page=True)

    page.goto(f"{live_site}/admin/djtasks/job/")
    page.screenshot(path=str(ARTIFACTS / "job_list.png"), full_page=True)
    page.goto(f"{live_site}/admin/djtasks/worker/")
    assert page.locator("#result_list").inner_text().count("alive") == 1


def test_operator_pauses_a_queue_sets_a_limit_and_resumes_it(browser_page, live_site, start_site_worker):
    from djtasks.models import Queue

    page = browser_page
    log_in(page, live_site)
    page.goto(f"{live_site}/admin/djtasks/queuedashboard/?refresh=300")
    page.click("#djtasks-pause-slow")
    page.locator("ul.messagelist").wait_for()
    assert "Queue slow paused." in page.locator("ul.messagelist").inner_text()
    assert page.locator("tr[data-queue='slow'] .state").inner_text() == "paused"
    [job] = enqueue("example_site.demo.tasks.add", 1, 2, 0, queue="slow")
    start_site_worker("--processes", "1", "--threads", "2", "--queues", "default,slow")
    wait_until(lambda: Worker.objects.count() == 1, timeout=60, message="the worker")
    time.sleep(2)
    assert Job.objects.get(id=job).status == "queued", "a job of a paused queue started"

    # The limits form: a bad value is refused with the queue and the value named, a good one saved.
    page.click("tr[data-queue='slow'] a.djtasks-edit-limits")
    page.fill("#id_concurrency", "0")
    page.click("input[name=_save]")
    assert "queue 'slow': concurrency must be a positive int or none, got 0" in page.locator(".errorlist").inner_text()
    page.fill("#id_concurrency", "2")
    page.click("input[name=_save]")
    page.wait_for_url("**/queuedashboard/")
    assert "2 at once" in page.locator("tr[data-queue='slow'] td.limit").inner_text()
    assert Queue.objects.get(name="slow").concurrency == 2

    page.click("#djtasks-resume-slow")
    page.locator("ul.messagelist").wait_for()
    wait_until(lambda: Job.objects.get(id=job).status == "succeeded", timeout=30, message="the resumed job")
    page.screenshot(path=str(ARTIFACTS / "dashboard_flow_control.png"), full_page=True)


OVERFLOW_JS = """() => {
    const page = document.documentElement.scrollWidth - window.innerWidth;
    const boxes = [...document.querySelectorAll('#changelist .results, #content, #content-main, .djtasks-dashboard')]
        .map(el => ({what: el.id || el.className, over: el.scrollWidth - el.clientWidth}))
        .filter(b => b.over > 0);
    return {page, boxes};
}"""


def test_admin_pages_fit_a_1280_pixel_screen(browser_page, live_site):
    """At 1280 x 800 the dashboard, the job list, the schedules and the workers need no horizontal scrolling,
    neither of the page nor of the list (which would hide columns behind a scroll bar)."""
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_site)
    page.wait_for_url(f"{live_site}/admin/")
    enqueue("example_site.demo.tasks.add", 1, 2, 0.5, count=3)
    failing = enqueue("example_site.demo.tasks.fail_once", 20, 22)[0]
    Job.objects.filter(id=failing).update(
        status="failed",
        attempt=1,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        errors=[{"type": "builtins.RuntimeError", "message": "x" * 300, "traceback": "", "attempt": 1}],
    )
    now = timezone.now()
    Schedule.objects.create(
        name="nightly-report-for-every-customer",
        job_name="example_site.demo.tasks.fail_once",
        cron="*/15 2 * * 1-5",
        timezone="America/Argentina/Buenos_Aires",
        next_fire_at=now,
        last_fire_at=now,
        last_job_id=failing,
        last_status="skipped: the previous job is still queued or running",
        source="settings",
    )
    Schedule.objects.create(name="demo-heartbeat", job_name="example_site.demo.tasks.heartbeat", interval_seconds=30)
    pages = {
        "dashboard": "/admin/djtasks/queuedashboard/",
        "job_list": "/admin/djtasks/job/",
        "schedules": "/admin/djtasks/schedule/",
        "workers": "/admin/djtasks/worker/",
    }
    overflowing = {}
    for name, path in pages.items():
        page.goto(live_site + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / f"{name}_1280x800.png"), full_page=False)
        found = page.evaluate(OVERFLOW_JS)
        if found["page"] > 0 or found["boxes"]:
            overflowing[name] = found
    assert not overflowing, f"horizontal overflow at 1280 px: {overflowing}"
