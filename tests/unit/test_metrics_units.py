"""The worker processes' accumulator (``worker/metering.py``), the supervisor's totals and their Prometheus text,
and the finished-jobs estimate: no database."""

from __future__ import annotations

import pickle

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from djtasks.metrics.database import estimate_finished
from djtasks.metrics.workers import WorkerTotals
from djtasks.worker.metering import DURATION_BOUNDS_S, Histogram, JobMeter, MeterDelta


def test_an_observation_on_a_bound_falls_in_that_bucket_as_prometheus_le_means():
    h = Histogram.empty((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe((0.1, 1.0), v)
    assert h.counts == [2, 2, 1] and h.count == 5 and h.total == 8.65


def test_each_count_is_shipped_exactly_once():
    shipped: list[MeterDelta] = []
    meter = JobMeter(shipped.append)
    meter.started("default", "a")
    meter.ended("default", "a", "succeeded", 0.02)
    meter.ended("default", "a", "queued", 0.5)
    meter.claimed(3, 0.001)
    meter.ship()
    meter.ship()  # nothing new: nothing sent
    assert len(shipped) == 1
    counts = shipped[0].jobs[("default", "a")]
    assert counts.started == 1 and counts.outcomes == {"succeeded": 1, "retried": 1}
    assert counts.durations.count == 2
    assert shipped[0].claim_sizes.total == 3
    meter.ended("other", "b", "failed", 1.0)
    meter.stop()  # never started: still ships the rest
    assert len(shipped) == 2 and set(shipped[1].jobs) == {("other", "b")}


def test_a_delta_survives_the_pipe():
    meter = JobMeter(lambda delta: None)
    meter.ended("default", "a", "cancelled", 3.0)
    delta = meter.take()
    copy = pickle.loads(pickle.dumps(delta))
    assert copy == delta and copy.jobs[("default", "a")].outcomes == {"cancelled": 1}


def test_totals_add_deltas_and_expose_cumulative_buckets():
    totals = WorkerTotals(processes=lambda: 3)
    for seconds in (0.004, 0.2, 20.0):
        meter = JobMeter(totals.add)  # one process each: its counts outlive it in the totals
        meter.started("default", "a")
        meter.ended("default", "a", "succeeded", seconds)
        meter.claimed(1, 0.002)
        meter.ship()
    registry = CollectorRegistry()
    registry.register(totals)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    labels = (("name", "a"), ("queue", "default"))
    assert samples[("djtasks_jobs_started_total", labels)] == 3
    assert (
        samples[("djtasks_jobs_finished_total", (("name", "a"), ("outcome", "succeeded"), ("queue", "default")))] == 3
    )
    bucket = "djtasks_job_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.005"), *labels))] == 1
    assert samples[(bucket, (("le", "0.25"), *labels))] == 2
    assert samples[(bucket, (("le", "30"), *labels))] == 3
    assert samples[(bucket, (("le", "+Inf"), *labels))] == 3
    assert len([k for k in samples if k[0] == bucket]) == len(DURATION_BOUNDS_S) + 1
    assert samples[("djtasks_claim_batch_size_count", ())] == 3
    assert samples[("djtasks_claim_duration_seconds_bucket", (("le", "0.0025"),))] == 3
    assert samples[("djtasks_worker_processes", ())] == 3


def test_finished_estimate_splits_each_queue_by_the_table_wide_status_shares():
    shares = {
        "queue": {"default": 0.75, "other": 0.25},
        "status": {"succeeded": 0.6, "failed": 0.2, "queued": 0.2},
    }
    active = {("default", "queued"): 200, ("default", "running"): 0}
    found = estimate_finished(1000, shares, active)
    # default: 750 rows, 200 active -> 550 finished, 3:1; other: 250 finished, 3:1; no cancelled in the stats
    assert found == {
        ("default", "succeeded"): 412, ("default", "failed"): 138, ("default", "cancelled"): 0,
        ("other", "succeeded"): 188, ("other", "failed"): 62, ("other", "cancelled"): 0,
    }  # fmt: skip
    assert estimate_finished(None, shares, active) == {}  # before the first ANALYZE
    assert estimate_finished(1000, {"queue": {}, "status": {}}, active) == {}
