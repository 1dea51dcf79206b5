"""The soak: a steady mixed load for a given time, sampled every ``--every`` seconds, then judged.

    python bench/soak.py [--minutes 15] [--rate 40] [--processes 2] [--threads 4] [--every 10]
    python bench/soak.py --quick          # 1 minute, 5 s samples: checks that everything works

One ``runworker --processes 2 --threads 4`` (its supervisor runs the rescuer and the pruner) and one ``runbeat``
on ``bench.soak_settings``: ``RESULT_TTL`` 60 s and ``FAILED_RESULT_TTL`` 120 s, so the pruner (every 60 s)
really deletes during the run, and a schedule ``soak-tick`` every 5 s. This process enqueues ``--rate`` jobs a
second with ``.delay()``, each in its own transaction: 80% ``soak_fast`` (no-op), 10% ``soak_slow`` (0.2 s),
5% ``soak_fail`` (fails for good), 5% ``soak_retry`` (fails its first attempt, succeeds 1 s later).

Every sample: each runworker/runbeat process's RSS, the connections open on the cluster by application name,
``djtasks_job``'s total size (table, indexes, TOAST), live and dead tuples and autovacuum count, the backlog,
and the queue latency (``enqueued_at`` -> ``started_at``, first attempts of fast and slow jobs started since
the last sample: p50/p95/max). The summary compares the first and last third of the samples taken after the
warm-up (the first TTL + 2 prune intervals, while history fills up to its steady level).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bench.common import JOB_TABLE, clear_jobs, database_info
from bench.procs import ActivitySampler, process_tree, rss_mb, spawn, stop
from bench.tasks import soak_fail, soak_fast, soak_retry, soak_slow, soak_tick
from djtasks.maintenance.pruner import PRUNE_INTERVAL_S
from djtasks.models import Job, Schedule, Worker

SETTINGS = "bench.soak_settings"
TTL_S = 60.0  # bench.soak_settings' RESULT_TTL (its default)
TICK_S = 5.0  # bench.soak_settings' schedule interval
MIX = [(soak_fast, 0.80), (soak_slow, 0.10), (soak_fail, 0.05), (soak_retry, 0.05)]
MEMORY_NOISE_MB = 3.0  # RSS moves by a few MB with the allocator's arenas; growth past this (and 5%) counts
SIZE_NOISE = 0.25  # the job table's size may move by this share between thirds (the pruner runs every 60 s)
LATENCY_NOISE = 2.0  # last third's p95 within 2x the first third's (or within 20 ms) is flat


def enqueue_one(rng: random.Random) -> None:
    pick = rng.random()
    chosen = MIX[-1][0]
    for job, share in MIX:
        pick -= share
        if pick < 0:
            chosen = job
            break
    chosen.delay()


def sample_db(since: Any) -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_total_relation_size(%s), n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count"
            " FROM pg_stat_user_tables WHERE relname = %s",
            [JOB_TABLE, JOB_TABLE],
        )
        size, live, dead, autovacuums, autoanalyzes = cur.fetchone()
        cur.execute("SELECT count(*) FILTER (WHERE status = 'queued' AND run_at <= now()), count(*) FROM djtasks_job")
        backlog, rows = cur.fetchone()
        cur.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY s), max(s), count(*) FROM ("
            " SELECT extract(epoch FROM started_at - enqueued_at) * 1000 AS s FROM djtasks_job"
            " WHERE started_at >= %s AND attempt = 1 AND name = ANY(%s)) AS l",
            [since, [soak_fast.name, soak_slow.name]],
        )
        pcts, worst, started = cur.fetchone()
        cur.execute("SELECT count(*) FROM djtasks_job WHERE name = %s AND enqueued_at >= %s", [soak_tick.name, since])
        (ticks,) = cur.fetchone()
    p50, p95 = pcts or (None, None)
    return {
        "size_mb": size / 2**20,
        "live": live,
        "dead": dead,
        "autovacuums": autovacuums,
        "autoanalyzes": autoanalyzes,
        "backlog": backlog,
        "rows": rows,
        "lat_p50": p50,
        "lat_p95": p95,
        "lat_max": worst,
        "started": started,
        "ticks": ticks,
    }


def sample_memory(worker_pid: int, beat_pid: int) -> dict[str, float]:
    """RSS (MB) of the supervisor, each worker process (by its djtasks pid) and runbeat."""
    out: dict[str, float] = {}
    workers = set(Worker.objects.values_list("pid", flat=True))
    for proc in process_tree(worker_pid):
        size = rss_mb(proc.pid)
        if size is None:
            continue
        if proc.pid == worker_pid:
            out["supervisor"] = size
        elif proc.pid in workers:
            out[f"worker {proc.pid}"] = size
    beat = rss_mb(beat_pid)
    if beat is not None:
        out["runbeat"] = beat
    return out


def thirds(values: list[float]) -> tuple[float, float]:
    """Medians of the first and last third."""
    k = max(1, len(values) // 3)
    return statistics.median(values[:k]), statistics.median(values[-k:])


def judge(samples: list[dict[str, Any]], warm_up_s: float) -> list[str]:
    """The summary's verdicts, one line each."""
    steady = [s for s in samples if s["t"] >= warm_up_s] or samples
    lines = [f"judged on {len(steady)} samples after a {warm_up_s:.0f} s warm-up (first vs last third, medians)"]
    for name in sorted({k for s in steady for k in s["rss"]}):
        series = [s["rss"][name] for s in steady if name in s["rss"]]
        first, last = thirds(series)
        grown = last - first
        verdict = "growth" if grown > max(MEMORY_NOISE_MB, 0.05 * first) else "flat"
        lines.append(
            f"RSS {name:<16} {first:6.1f} -> {last:6.1f} MB ({grown:+.1f}; min {min(series):.1f}, "
            f"max {max(series):.1f}): {verdict}"
        )
    first, last = thirds([s["db"]["size_mb"] for s in steady])
    verdict = "stable" if abs(last - first) <= SIZE_NOISE * first else "moving"
    lines.append(f"djtasks_job total size   {first:6.1f} -> {last:6.1f} MB: {verdict}")
    first, last = thirds([float(s["db"]["rows"]) for s in steady])
    lines.append(f"djtasks_job rows         {first:8,.0f} -> {last:8,.0f}")
    first, last = thirds([float(s["db"]["dead"]) for s in steady])
    lines.append(
        f"dead tuples              {first:8,.0f} -> {last:8,.0f} (max {max(s['db']['dead'] for s in steady):,})"
    )
    p95s = [s["db"]["lat_p95"] for s in steady if s["db"]["lat_p95"] is not None]
    p50s = [s["db"]["lat_p50"] for s in steady if s["db"]["lat_p50"] is not None]
    if p95s:
        (f50, l50), (f95, l95) = thirds(p50s), thirds(p95s)
        flat = l95 <= max(LATENCY_NOISE * f95, f95 + 20.0)
        lines.append(
            f"queue latency p50 {f50:.1f} -> {l50:.1f} ms, p95 {f95:.1f} -> {l95:.1f} ms: "
            + ("flat" if flat else "rising")
        )
    conns = [sum(s["connections"].values()) for s in steady]
    lines.append(
        f"connections on the cluster: {min(conns)}-{max(conns)} (by name at the end: {dict(steady[-1]['connections'])})"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=40.0, help="jobs enqueued per second")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--quick", action="store_true", help="1 minute, samples every 5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.every = 1.0, 5.0
    call_command("migrate", verbosity=0)
    clear_jobs()
    Schedule.objects.all().delete()
    info = database_info()
    print(
        f"{info['postgres_version']}, cpus={info['cpus']}, load average {info['loadavg'][0]:.2f}; "
        f"{args.minutes:g} min at {args.rate:g} jobs/s, runworker {args.processes}x{args.threads} + runbeat",
        flush=True,
    )
    Worker.objects.all().delete()
    log = Path(tempfile.mkdtemp(prefix="djtasks-soak-")) / "processes.log"
    print(f"runworker and runbeat log to {log}", flush=True)
    worker = spawn(
        "runworker", "--processes", str(args.processes), "--threads", str(args.threads), settings=SETTINGS, log=log
    )
    beat = spawn("runbeat", settings=SETTINGS, log=log)
    sampler = ActivitySampler()
    rng = random.Random(17)
    samples: list[dict[str, Any]] = []
    try:
        while Worker.objects.count() < args.processes:
            if worker.poll() is not None:
                raise SystemExit(f"runworker exited with {worker.returncode}")
            time.sleep(0.1)
        print(
            f"\n{'t s':>5} {'sent':>6} {'rss MB (sup/workers/beat)':>28} {'conns':>5} {'size MB':>8} {'rows':>7}"
            f" {'dead':>6} {'av':>3} {'backlog':>7} {'lat p50/p95/max ms':>20}",
            flush=True,
        )
        started = time.monotonic()
        end = started + args.minutes * 60
        next_sample = started + args.every
        last_sample_at = timezone.now()
        sent = 0
        while (now := time.monotonic()) < end:
            due = int((now - started) * args.rate) - sent
            for _ in range(due):
                enqueue_one(rng)
            sent += max(0, due)
            if now >= next_sample:
                next_sample += args.every
                at = timezone.now()
                db = sample_db(last_sample_at)
                last_sample_at = at
                mem = sample_memory(worker.pid, beat.pid)
                conns = sampler.sample()
                samples.append({"t": now - started, "rss": mem, "db": db, "connections": conns, "sent": sent})
                workers = "/".join(f"{v:.0f}" for k, v in sorted(mem.items()) if k.startswith("worker"))
                rss = f"{mem.get('supervisor', 0):.0f}/{workers}/{mem.get('runbeat', 0):.0f}"
                lat = (
                    f"{db['lat_p50']:.1f}/{db['lat_p95']:.1f}/{db['lat_max']:.0f}" if db["lat_p50"] is not None else "-"
                )
                print(
                    f"{now - started:5.0f} {sent:6} {rss:>28} {sum(conns.values()):5} {db['size_mb']:8.1f}"
                    f" {db['rows']:7} {db['dead']:6} {db['autovacuums']:3} {db['backlog']:7} {lat:>20}",
                    flush=True,
                )
                if worker.poll() is not None or beat.poll() is not None:
                    raise SystemExit("runworker or runbeat exited during the soak")
            time.sleep(0.01)
    finally:
        stop([worker, beat])
        sampler.close()
    elapsed = time.monotonic() - started
    ticks = sum(s["db"]["ticks"] for s in samples)
    left = Counter(dict(Job.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")))
    print(
        f"\n{sent} jobs enqueued in {elapsed:.0f} s ({sent / elapsed:.1f}/s); the schedule fired {ticks} times "
        f"(every {TICK_S:g} s: {elapsed / TICK_S:.0f} expected); left in the table: {dict(left)}"
    )
    warm_up = TTL_S * 2 + 2 * PRUNE_INTERVAL_S if not args.quick else 0.0
    for line in judge(samples, min(warm_up, elapsed / 3)):
        print(line, flush=True)


if __name__ == "__main__":
    main()
