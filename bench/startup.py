"""Worker start-up: from launching ``manage.py runworker`` to its first job started, with jobs already waiting.

    python bench/startup.py [--processes 2] [--runs 6] [--recycle]

Each run empties the job table, enqueues ``--jobs`` ``stamp`` jobs (each returns the wall-clock time its
function started), launches a real ``runworker`` and reads the earliest start from the results; then stops
the worker (SIGTERM). The first run is "cold" as far as this script can make it: it drops the kernel's page
cache first when it may (root in a VM; it says whether it could) and runs before any other launch of this
interpreter's modules; the others are "warm" (median and spread printed).

``--recycle`` also measures a recycled process: a worker with ``--processes 1 --max-jobs-per-child N`` drains
a backlog of ``stamp`` jobs, and the largest gap between one job's start and the next is what the replacement
process cost (the old process's last jobs and the new one's first).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command

from bench.common import ROOT, checkpoint, clear_jobs, report
from bench.tasks import stamp
from djtasks.models import Job

TIMEOUT_S = 60.0


def drop_page_cache() -> bool:
    """Drop the kernel's page cache (needs root and a writable /proc/sys); False if not allowed."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _launch(processes: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    cmd = [sys.executable, str(ROOT / "manage.py"), "runworker", "--processes", str(processes)]
    cmd += ["--loglevel", "WARNING", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _starts(since: float) -> list[float]:
    return sorted(
        r for r in Job.objects.filter(status="succeeded").values_list("result", flat=True) if r and r >= since
    )


def one_start(processes: int, jobs: int) -> float:
    """Seconds from launch to the first job's function starting."""
    clear_jobs()
    stamp.bulk_delay([()] * jobs)
    checkpoint()
    launched = time.time()
    proc = _launch(processes)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (starts := _starts(launched)):
            if proc.poll() is not None:
                raise SystemExit(f"runworker exited with {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise SystemExit("runworker ran no job within 60 s")
            time.sleep(0.01)
        return starts[0] - launched
    finally:
        _stop(proc)


def recycle_gap(jobs: int, per_child: int) -> dict[str, float]:
    """Largest gap between consecutive job starts while one process recycles every ``per_child`` jobs."""
    clear_jobs()
    stamp.bulk_delay([()] * jobs)
    checkpoint()
    launched = time.time()
    proc = _launch(1, "--threads", "1", "--max-jobs-per-child", str(per_child))
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while Job.objects.filter(status__in=["queued", "running"]).exists():
            if time.monotonic() > deadline:
                raise SystemExit("recycling drain did not finish within 60 s")
            time.sleep(0.02)
    finally:
        _stop(proc)
    starts = _starts(launched)
    gaps = sorted((b - a for a, b in itertools.pairwise(starts)), reverse=True)
    recycles = max(1, jobs // per_child - 1)
    return {"max_gap": gaps[0], "recycle_gaps": gaps[:recycles], "jobs": len(starts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=6, help="launches: the first cold, the rest warm")
    parser.add_argument("--jobs", type=int, default=200, help="jobs waiting at each launch")
    parser.add_argument("--recycle", action="store_true", help="also measure the gap a recycled process leaves")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    dropped = drop_page_cache()
    cold = one_start(args.processes, args.jobs)
    report(f"start-up, cold (page cache {'dropped' if dropped else 'NOT dropped'})", cold * 1000, "ms")
    warm = [one_start(args.processes, args.jobs) for _ in range(args.runs - 1)]
    if warm:
        report(f"start-up, warm, median of {len(warm)}", statistics.median(warm) * 1000, "ms")
        report("start-up, warm, fastest", min(warm) * 1000, "ms")
        report("start-up, warm, slowest", max(warm) * 1000, "ms")
    if args.recycle:
        gap = recycle_gap(2000, 500)
        report("recycling (1 process, every 500 jobs): largest gap", gap["max_gap"] * 1000, "ms")
        print("  (largest gaps: " + ", ".join(f"{g * 1000:.0f} ms" for g in gap["recycle_gaps"]) + ")")
    with contextlib.suppress(Exception):
        clear_jobs()


if __name__ == "__main__":
    main()
