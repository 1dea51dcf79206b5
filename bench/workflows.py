"""Workflow benchmarks: a chord of 10,000 header jobs and a long chain, on a real ``runworker``.

    python bench/workflows.py [--chord 10000] [--chain 1000] [--processes 2] [--threads 4]

Prints: the chord's enqueue time (every row with COPY, one transaction), its drain, and the time from the
last header job's finish to the callback's start (the hand-off: the counter reaching 0 releases the callback in
the finishing transaction; the rest is NOTIFY and a claim); then chain throughput in steps per second (each
step is a hand-off, a NOTIFY and a claim, one after the other).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.db.models import Max, Min

from bench.common import checkpoint, clear_jobs, report
from bench.run import running_worker
from bench.tasks import count, step
from djtasks import JobStatus, chain, chord
from djtasks.models import Group, Job

TIMEOUT_S = 900.0
POLL_S = 0.01


def _wait(result, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not result.refresh().status.is_final:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not finish within {TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    if result.status != JobStatus.SUCCEEDED:
        raise SystemExit(f"{what} ended {result.status}: {result.error}")


def bench_chord(n: int, processes: int, threads: int) -> dict[str, float]:
    clear_jobs()
    Group.objects.all().delete()
    checkpoint()
    started = time.perf_counter()
    callback = chord([step.s(i) for i in range(n)], count.s()).delay()
    enqueue_s = time.perf_counter() - started
    with running_worker(processes, threads):
        _wait(callback, "the chord")
    assert callback.result == n
    headers = Job.objects.filter(group_id__isnull=False)
    span = headers.aggregate(first=Min("started_at"), last=Max("finished_at"))
    callback_row = Job.objects.get(id=callback.id)
    handoff_ms = (callback_row.started_at - span["last"]).total_seconds() * 1000
    drain_s = (span["last"] - span["first"]).total_seconds()
    return {"jobs": n, "enqueue_s": enqueue_s, "header_drain_s": drain_s, "handoff_ms": handoff_ms}


def bench_chain(n: int, processes: int, threads: int) -> dict[str, float]:
    clear_jobs()
    checkpoint()
    last = chain(step.s(0), *[step.s() for _ in range(n - 1)]).delay()
    with running_worker(processes, threads):
        _wait(last, "the chain")
    assert last.result == n
    span = Job.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    elapsed = (span["last"] - span["first"]).total_seconds()
    return {"steps": n, "seconds": elapsed, "rate": n / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chord", type=int, default=10_000, help="header jobs of the chord")
    parser.add_argument("--chain", type=int, default=1_000, help="steps of the chain")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    c = bench_chord(args.chord, args.processes, args.threads)
    report(f"chord of {c['jobs']}: enqueue (COPY, one transaction)", c["enqueue_s"] * 1000, "ms")
    report(f"chord of {c['jobs']}: header drain", c["jobs"] / c["header_drain_s"], "jobs/s")
    report(f"chord of {c['jobs']}: last header finished -> callback started", c["handoff_ms"], "ms")
    ch = bench_chain(args.chain, args.processes, args.threads)
    report(f"chain of {ch['steps']} steps: throughput", ch["rate"], "steps/s")


if __name__ == "__main__":
    main()
