"""``runworker --metrics-port``: a real runworker scraped over HTTP while it runs known jobs; the counters and
histograms must match what ran, across its processes and across a process that is recycled."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from djtasks.models import Job, Worker
from tests.conftest import ManagedProcess, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.acceptance]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from the endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def statuses() -> Counter:
    return Counter(Job.objects.values_list("status", flat=True))


def test_scrape_counts_what_ran_across_processes_and_recycles(start_worker):
    port = free_port()
    record, boom, flaky = tasks.record.name, tasks.boom.name, tasks.flaky.name
    # --max-jobs-per-child 15: the 40 jobs take at least three processes' lives, so the counts of the
    # recycled ones must survive them, and none may be counted twice.
    worker = start_worker(
        "--processes", "2", "--threads", "2", "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
        "--max-jobs-per-child", "15",
    )  # fmt: skip
    tasks.record.bulk_delay([(f"m-{i}", 0.01) for i in range(30)])
    tasks.boom.bulk_delay([("x",)] * 7)
    tasks.flaky.delay(succeed_on=2)  # fails once (retried, backoff 1 s), then succeeds
    tasks.flaky.delay(succeed_on=9)  # max_attempts 3: retried twice, then failed
    wait_until(lambda: statuses()["succeeded"] == 31 and statuses()["failed"] == 8, timeout=90, message="jobs done")

    finished = "djtasks_jobs_finished_total"
    expected = {
        (record, "succeeded"): 30,
        (boom, "failed"): 7,
        (flaky, "retried"): 3,
        (flaky, "succeeded"): 1,
        (flaky, "failed"): 1,
    }

    def observed() -> dict[tuple[str, str], float]:
        samples = scrape(port)
        return {key: value(samples, finished, queue="default", name=key[0], outcome=key[1]) for key in expected}

    # Each process ships its counts about once a second: wait for the last shipment, then compare exactly.
    wait_until(lambda: observed() == expected, timeout=30, message=f"the scrape to show {expected}")
    samples = scrape(port)
    assert sum(n for (metric, _), n in samples.items() if metric == finished) == sum(expected.values())
    assert value(samples, "djtasks_jobs_started_total", queue="default", name=record) == 30
    assert value(samples, "djtasks_jobs_started_total", queue="default", name=flaky) == 5
    # duration histograms: one observation per attempt, every record job took at least its 10 ms sleep
    assert value(samples, "djtasks_job_duration_seconds_count", queue="default", name=record) == 30
    assert value(samples, "djtasks_job_duration_seconds_count", queue="default", name=boom) == 7
    assert value(samples, "djtasks_job_duration_seconds_bucket", queue="default", name=record, le="0.005") == 0
    assert value(samples, "djtasks_job_duration_seconds_bucket", queue="default", name=record, le="+Inf") == 30
    assert value(samples, "djtasks_job_duration_seconds_sum", queue="default", name=record) >= 30 * 0.01
    # claims: every started job was claimed by some statement; the batch sizes add up to at least that
    claims = value(samples, "djtasks_claim_batch_size_count")
    assert claims >= 1 and value(samples, "djtasks_claim_duration_seconds_count") == claims
    assert value(samples, "djtasks_claim_batch_size_sum") >= 30 + 7 + 5
    assert value(samples, "djtasks_claim_batch_size_bucket", le="+Inf") == claims
    assert value(samples, "djtasks_worker_processes") == 2
    # the database gauges, from the same endpoint
    assert value(samples, "djtasks_database_up") == 1
    assert value(samples, "djtasks_workers_alive") == Worker.objects.count()
    assert "recycles" in worker.log, "the test must cover a recycled process"
    # The endpoint's thread and socket come after the fork server: workers are still forked, not spawned.
    assert "spawned, not forked" not in worker.log, worker.log
    assert worker.stop() == 0


def test_metrics_port_in_use_is_a_clear_error_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = ManagedProcess(
            tmp_path, "runworker", "--processes", "1", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"
        )
        code = worker.wait(timeout=60)
    assert code == 1, worker.log
    assert f"--metrics-port {port}" in worker.log and "in use" in worker.log, worker.log
    assert "Traceback" not in worker.log
    assert "started worker process" not in worker.log
    assert not Worker.objects.exists()


def test_metrics_port_out_of_range_is_refused(tmp_path):
    worker = ManagedProcess(tmp_path, "runworker", "--processes", "1", "--metrics-port", "70000")
    assert worker.wait(timeout=60) == 1
    assert "--metrics-port 70000" in worker.log, worker.log


def test_attempts_a_killed_or_dead_process_never_reported_are_counted_by_the_supervisor(start_worker):
    port = free_port()
    worker = start_worker("--processes", "1", "--threads", "2", "--metrics-port", str(port))
    overdue = tasks.overdue.delay(60)  # time_limit 1.5 s: its process is killed, the attempt fails
    wait_until(lambda: overdue.refresh().ready(), timeout=60, message="the time limit")
    died = tasks.segfault.delay()  # max_attempts 2: each attempt kills its process
    wait_until(lambda: died.refresh().ready(), timeout=90, message="both attempts to die")
    lost = "djtasks_attempts_lost_total"
    wait_until(lambda: value(scrape(port), lost, reason="process_died") == 2, timeout=30, message="the deaths counted")
    samples = scrape(port)
    assert value(samples, lost, reason="time_limit") == 1
    assert value(samples, lost, reason="terminated") == 0
    assert value(samples, "djtasks_jobs_started_total", queue="default", name=tasks.overdue.name) == 1
    assert not any(metric == "djtasks_jobs_finished_total" for metric, _ in samples)
    assert worker.stop() == 0


def test_a_metrics_address_that_cannot_be_listened_on_names_both_options(tmp_path):
    port = free_port()
    worker = ManagedProcess(
        tmp_path, "runworker", "--processes", "1", "--metrics-port", str(port), "--metrics-address", "192.0.2.1"
    )  # TEST-NET-1: never an address of this machine
    assert worker.wait(timeout=60) == 1
    assert f"--metrics-port {port}: cannot listen on 192.0.2.1:{port}" in worker.log, worker.log
    assert "--metrics-address" in worker.log and "Traceback" not in worker.log
    assert "started worker process" not in worker.log
