"""How fast the admin is on a big job table: fills ``djtasks_job`` with a million rows (by default) in a throwaway
PostgreSQL cluster, then times the jobs list, each of its filters, search, a detail page, the workers page and the
queue dashboard through Django's test client, and prints the numbers.

    python bench/admin_timing.py                 # 1,000,000 rows
    python bench/admin_timing.py --rows 200000 --repeat 5 --explain

The rows are the demo site's jobs (``example_site``): 95% succeeded over the past day, 2% failed, 1% cancelled,
1% queued and due, 1% scheduled, one in 20,000 running. A page's time is the median of ``--repeat`` requests after
one warm-up request, measured in this process (template rendering included, network excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 1.0  # the admin's target: every list, filter and the dashboard under a second


def setup_django(dbname: str) -> None:
    from devtools.localpg import throwaway_cluster

    throwaway_cluster(dbname)  # exports DATABASE_URL
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_site.settings"
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["DEBUG"] = "False"
    import django

    django.setup()


def fill(rows: int) -> float:
    from django.db import connection
    from django.utils import timezone

    from djtasks.ids import uuid7
    from djtasks.registry import registry
    from djtasks.store import parse_queries

    jobs = sorted(registry.all(), key=lambda j: j.name)
    # Weighted: the first job name is the busiest, as on a real site.
    weighted = [jobs[0]] * 6 + [j for j in jobs[1:] for _ in range(2)]
    names = [j.name for j in weighted]
    queues = [j.queue or "default" for j in weighted]
    sql = parse_queries((Path(__file__).parent / "sql" / "fill.sql").read_text(), "bench/sql/fill.sql")
    started = time.perf_counter()
    batch = 250_000
    now = timezone.now()
    for done in range(0, rows, batch):
        last = min(done + batch, rows)
        params = {"now": now, "first": done + 1, "last": last, "total": rows, "names": names, "queues": queues}
        with connection.cursor() as cur:
            cur.execute(sql["job_fill_synthetic"], {**params, "worker_id": uuid7()})
        print(f"  filled {min(done + batch, rows):>9,} rows", flush=True)
    with connection.cursor() as cur:
        cur.execute(sql["job_table_analyze"])  # VACUUM: outside a transaction (autocommit)
    return time.perf_counter() - started


def timed(client, url: str, repeat: int) -> tuple[float, float, int, int]:
    """(median s, max s, status, queries) for GET url."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm-up: templates, caches
    times = []
    status = 0
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    queries = len(ctx.captured_queries)
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        status = response.status_code
    return statistics.median(times), max(times), status, queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed requests per page (median reported)")
    parser.add_argument("--explain", action="store_true", help="print the plan of each filtered list query")
    args = parser.parse_args()

    print(f"starting a throwaway PostgreSQL and filling djtasks_job with {args.rows:,} rows ...", flush=True)
    setup_django("djtasks_bench")
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from djtasks.admin.jobs import StatusFilter
    from djtasks.conf import djtasks_settings
    from djtasks.cursors import django_store
    from djtasks.models import Job
    from djtasks.registry import registry

    call_command("migrate", verbosity=0)
    fill_s = fill(args.rows)
    print(f"  filled and analyzed in {fill_s:.1f} s")
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)

    failed = Job.objects.filter(status="failed").order_by("-id").first()
    statuses = [value for value, _ in StatusFilter.lookups(None, None, None)]
    pages: list[tuple[str, str]] = [("jobs list", "/admin/djtasks/job/")]
    pages += [(f"status={s}", f"/admin/djtasks/job/?status={s}") for s in statuses]
    pages += [(f"queue={q}", f"/admin/djtasks/job/?queue={q}") for q in djtasks_settings.QUEUES]
    pages += [(f"name={j.name}", f"/admin/djtasks/job/?name={j.name}") for j in registry.all()]
    pages += [
        ("status=failed&queue=slow", "/admin/djtasks/job/?status=failed&queue=slow"),
        ("status=queued&name=…fail", "/admin/djtasks/job/?status=queued&name=example_site.demo.tasks.fail"),
        ("page 2", "/admin/djtasks/job/?p=2"),
        ("page 100", "/admin/djtasks/job/?p=100"),
        ("search by id", f"/admin/djtasks/job/?q={failed.id}"),
        ("search by name", "/admin/djtasks/job/?q=flaky"),
        ("job detail (failed)", f"/admin/djtasks/job/{failed.id}/change/"),
        ("workers", "/admin/djtasks/worker/"),
        ("queue dashboard", "/admin/djtasks/queuedashboard/"),
        ("dashboard refresh (partial)", "/admin/djtasks/queuedashboard/?partial=1"),
    ]
    required = {"jobs list", "queue dashboard", "dashboard refresh (partial)"} | {
        label for label, _ in pages if label.split("=")[0] in ("status", "queue", "name") and "&" not in label
    }

    print(f"\n{'page':<48} {'median':>8} {'max':>8} {'queries':>7}  status")
    slow = []
    for label, url in pages:
        median, worst, status, queries = timed(client, url, args.repeat)
        flag = ""
        if label in required and median >= BUDGET_S:
            flag = "  OVER BUDGET"
            slow.append(label)
        print(f"{label:<48} {median * 1000:>6.0f}ms {worst * 1000:>6.0f}ms {queries:>7}  {status}{flag}")

    exact = Job.objects.count()
    estimate = django_store().job_count_estimate()
    print(f"\nrow count: exact {exact:,}, estimate shown by the list {estimate:,} ({(estimate - exact) / exact:+.2%})")
    if args.explain:
        from django.utils import timezone

        print("\nplans of the list queries (first page, newest first):")
        for label, qs in [
            ("unfiltered", Job.objects.all()),
            ("status=failed", Job.objects.filter(status="failed")),
            ("status=cancelled", Job.objects.filter(status="cancelled")),
            ("status=queued", Job.objects.filter(status="queued")),
            ("status=scheduled", Job.objects.filter(status="queued", run_at__gt=timezone.now())),
            ("status=running", Job.objects.filter(status="running")),
            ("queue=slow", Job.objects.filter(queue="slow")),
        ]:
            print(f"-- {label}\n{qs.order_by('-id')[:100].explain(analyze=True)}\n")
    print(
        f"\n{len(required) - len(slow)} of {len(required)} required pages under {BUDGET_S:.0f} s"
        + (f"; over: {', '.join(slow)}" if slow else "")
    )
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
