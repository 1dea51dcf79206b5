"""How many jobs a SIGKILL charges: a worker process holds jobs claimed ahead behind slow ones, and dies.

    python bench/kill_charge.py [--kill process|runworker|both] [--threads 4] [--fast 100]

One ``runworker --processes 1`` learns that ``noop`` is fast (a warm-up), then gets ``--threads`` jobs that
sleep 2 s followed by ``--fast`` no-ops in one commit: its threads run the slow ones and, with prefetch, it
holds the no-ops claimed ahead. Once the slow jobs have started (each touches a marker file first), the
worker process is SIGKILLed (``process``: its supervisor rescues), or the whole runworker with it
(``runworker``: another runworker's rescuer does, after ``WORKER_TIMEOUT``). Every job has
``max_attempts=1``. It prints how many jobs held were charged an attempt (a ``WorkerLost`` entry) and how
many of those had never started. Only the ORM and the public API are used, so the same script measures
older code (copy it, ``kill_settings.py`` and ``tasks.py`` into that tree's ``bench/``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.kill_settings"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.db import transaction

from bench.common import ROOT, clear_jobs
from bench.tasks import noop, sleep_for
from djtasks.models import Job, Worker

SLOW_S = 2.0
WARM_UP = 200
TIMEOUT_S = 120.0


def wait(predicate, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def runworker(threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.kill_settings"}
    args = ["runworker", "--processes", "1", "--threads", str(threads), "--loglevel", "ERROR"]
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, start_new_session=True)


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_text()
        except OSError:
            continue
        if "(djtasks-forksrv)" in stat or "resource_tracker" in cmdline:
            continue  # the fork server, or spawn's resource tracker: neither runs jobs
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def one_kill(kind: str, threads: int, fast: int) -> dict[str, int]:
    clear_jobs()
    Worker.objects.all().delete()
    markers = Path(tempfile.mkdtemp(prefix="djtasks-kill-"))
    worker = runworker(threads)
    others: list[subprocess.Popen[bytes]] = []
    try:
        wait(lambda: Worker.objects.count() == 1, "the worker process")
        noop.bulk_delay([()] * WARM_UP)
        wait(lambda: Job.objects.filter(status="succeeded").count() == WARM_UP, "the warm-up")
        with transaction.atomic():
            slow = sleep_for.bulk_delay([(SLOW_S, str(markers / str(i))) for i in range(threads)])
            quick = noop.bulk_delay([()] * fast)
        held = {r.id for r in slow} | {r.id for r in quick}
        wait(lambda: len(list(markers.iterdir())) == threads, "the slow jobs to start")
        time.sleep(0.3)  # their start marks reach the database (what a rescuer from elsewhere reads)
        holding = Job.objects.filter(id__in=held, status="running").count()
        if kind == "process":
            (child,) = children(worker.pid)
            os.kill(child, signal.SIGKILL)
        else:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
            others.append(runworker(threads))
        wait(lambda: not Job.objects.filter(status__in=["queued", "running"]).exists(), "every job to settle")
        jobs = list(Job.objects.filter(id__in=held))
        charged = [j for j in jobs if any(e["type"] == "djtasks.exceptions.WorkerLost" for e in j.errors)]
        quick_ids = {r.id for r in quick}
        return {
            "held": holding,
            "started": threads,
            "charged": len(charged),
            "charged_never_started": sum(j.id in quick_ids for j in charged),
            "failed": sum(j.status == "failed" for j in jobs),
        }
    finally:
        for proc in [worker, *others]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill", choices=["process", "runworker", "both"], default="both")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--fast", type=int, default=100)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.threads} threads, {args.fast} no-ops behind 2 s jobs")
    for kind in ["process", "runworker"] if args.kill == "both" else [args.kill]:
        found = one_kill(kind, args.threads, args.fast)
        print(
            f"SIGKILL of the {'worker process' if kind == 'process' else 'whole runworker'}: held {found['held']} "
            f"jobs ({found['started']} started); charged {found['charged']} "
            f"({found['charged_never_started']} never started); failed {found['failed']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
