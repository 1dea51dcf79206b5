"""Celery + Redis: single ``.delay()`` rate, drain of N no-op tasks, idle pick-up latency.

    python -m bench.peers.celery_bench [--jobs 20000] [--enqueue 2000] [--samples 200] [--concurrency 2]

Starts its own ``redis-server`` (Debian's) on a unix socket in a temporary directory, with persistence off
(``--save "" --appendonly no``), and a worker ``celery worker --pool prefork --concurrency 2`` with
``task_ignore_result``. Progress goes to stderr; the last stdout line is ``RESULT {json}``.

How completion is detected without slowing Celery down: the no-op task does nothing at all (no counter, no
result). The backlog is framed by two ``stamp`` tasks, enqueued first and last, that push ``time.time()`` at
their start onto a Redis list; the drain is N / (end stamp - start stamp). Redis lists are FIFO, so the end
stamp starts after every no-op has been handed to a child; at most a prefetched handful may still be running
in the other child then (well under 0.1% of the jobs). The worker's own counters (``inspect().stats()``)
then confirm that all N no-ops ran and the queue is empty.

Idle pick-up: ``stamp`` is sent to an idle worker 200 times, one at a time; the latency runs from Celery's
``before_task_publish`` signal (just before the message goes to Redis: the analogue of djtasks' COMMIT) to
the time the task recorded at its start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
REDIS_START_TIMEOUT_S = 20.0
WORKER_STOP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 900.0
PICKUP_TIMEOUT_S = 30.0
PICKUP_GAP_S = 0.01  # as in bench/run.py: each sample finds an idle worker
QUEUE_KEY = "celery"  # the Redis list behind Celery's default queue
DRAIN_KEY = "bench:drain"
PICKUP_KEY = "bench:pickup"


def log(msg: str) -> None:
    print(f"celery: {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install -y redis-server")
    sock = os.path.join(tmp, "redis.sock")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            sock,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(tmp, "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(unix_socket_path=sock)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while True:
        try:
            if client.ping():
                break
        except (redis.ConnectionError, FileNotFoundError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"redis-server did not start; see {tmp}/redis.log")
        time.sleep(0.05)
    client.close()
    return proc, sock


def stop(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # as root (this machine's case) Celery warns at length; the tasks take JSON only, so it does not apply
    env["PYTHONWARNINGS"] = "ignore:You're running the worker with superuser privileges"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--quiet",
            "-A",
            "bench.peers.celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--hostname",
            "bench@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=sys.stderr,
    )


def wait_stamp(client: Any, key: str, worker: subprocess.Popen[bytes], timeout: float) -> float:
    """Block until a ``stamp`` task pushed onto ``key``; return the time it recorded."""
    deadline = time.monotonic() + timeout
    while True:
        got = client.blpop([key], timeout=1)
        if got is not None:
            return float(got[1])
        if worker.poll() is not None:
            raise SystemExit(f"celery worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no {key} stamp within {timeout:.0f} s")


def run(args: argparse.Namespace, sock: str) -> dict[str, Any]:
    import redis
    from celery import signals

    from bench.peers.celery_app import app, noop, stamp

    published: list[float] = [0.0]

    def on_publish(**_: Any) -> None:
        published[0] = time.time()

    signals.before_task_publish.connect(on_publish, weak=False)
    client = redis.Redis(unix_socket_path=sock)
    out: dict[str, Any] = {}

    # single .delay(): no worker yet, the messages just land in the queue
    for _ in range(10):  # open the producer connection outside the timing
        noop.delay()
    client.delete(QUEUE_KEY)
    latencies = []
    started = time.perf_counter()
    for _ in range(args.enqueue):
        t0 = time.perf_counter()
        noop.delay()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    client.delete(QUEUE_KEY)
    out["delay"] = {
        "rate": args.enqueue / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "jobs": args.enqueue,
    }
    log(f".delay() {out['delay']['rate']:,.0f} jobs/s")

    # drain: the backlog is enqueued before the worker starts, framed by two stamps
    client.delete(DRAIN_KEY, PICKUP_KEY)
    started = time.perf_counter()
    stamp.delay(DRAIN_KEY)
    for _ in range(args.jobs):
        noop.delay()
    stamp.delay(DRAIN_KEY)
    out["enqueue_backlog"] = {"rate": (args.jobs + 2) / (time.perf_counter() - started), "jobs": args.jobs}
    log(f"{args.jobs} enqueued; starting the worker")
    worker = start_worker(args.concurrency)
    try:
        first = wait_stamp(client, DRAIN_KEY, worker, DRAIN_TIMEOUT_S)
        last = wait_stamp(client, DRAIN_KEY, worker, DRAIN_TIMEOUT_S)
        time.sleep(0.2)  # let the other child finish its last prefetched no-ops before counting
        left = client.llen(QUEUE_KEY)
        stats = app.control.inspect(timeout=5).stats() or {}
        ran = sum(s.get("total", {}).get(noop.name, 0) for s in stats.values())
        if left or ran != args.jobs:
            raise SystemExit(f"celery drain: {ran} of {args.jobs} no-ops ran, {left} messages left")
        elapsed = last - first
        out["drain"] = {"rate": args.jobs / elapsed, "seconds": elapsed, "jobs": args.jobs}
        log(f"drain {out['drain']['rate']:,.0f} jobs/s")

        # idle pick-up latency
        picks = []
        for _ in range(args.samples):
            stamp.delay(PICKUP_KEY)
            sent = published[0]
            picks.append(wait_stamp(client, PICKUP_KEY, worker, PICKUP_TIMEOUT_S) - sent)
            time.sleep(PICKUP_GAP_S)
        out["pickup"] = {
            "p50_ms": statistics.median(picks) * 1000,
            "p95_ms": percentile(picks, 0.95) * 1000,
            "samples": args.samples,
        }
        log(f"pick-up p50 {out['pickup']['p50_ms']:.1f} ms")
    finally:
        stop(worker, WORKER_STOP_TIMEOUT_S)
    import celery

    out["versions"] = {
        "celery": celery.__version__,
        "redis-py": redis.__version__,
        "redis-server": client.info("server")["redis_version"],
    }
    out["settings"] = f"prefork, concurrency {args.concurrency}, task_ignore_result, broker on a unix socket"
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--enqueue", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    redis_proc = None
    try:
        redis_proc, sock = start_redis(tmp)
        os.environ["BENCH_REDIS_SOCKET"] = sock  # read by bench.peers.celery_app here and in the worker
        out = run(args, sock)
    finally:
        stop(redis_proc, 10)
        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
