"""One run, every system, one table: ``python bench/run.py --peers`` (or ``--ceiling`` for djtasks + ceiling).

Order, chosen so that the figures a ratio compares are measured close together on a noisy machine:
1. ``.delay()`` and the bare ``job_insert`` + COMMIT, interleaved in ``ENQUEUE_ROUNDS`` rounds;
2. djtasks: ``bulk_delay``, drain, idle pick-up, drain with the finished-rows history (``bench/run.py``);
3. the ceiling: bare claim+finish loop, ``K`` jobs per claim, then 1 per claim (``bench/ceiling.py``);
4. Celery + Redis and 5. django-tasks-db, each in a subprocess (``celery_bench.py``, ``dtdb_bench.py``) that
   prints its figures as JSON. A peer whose packages or ``redis-server`` are missing is skipped with the
   command that installs it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from importlib.util import find_spec
from typing import Any

import django

from bench import bare_sql, ceiling, run
from bench.common import ROOT, checkpoint, clear_jobs, report

ENQUEUE_ROUNDS = 20  # with --enqueue 4000: 200 calls a round, each system ~1.5 s in all
DRIVER_TIMEOUT_S = 900.0
INSTALL_PEERS = "pip install -r bench/requirements-peers.txt"
INSTALL_REDIS = "apt-get install -y redis-server"

# The targets on this machine.
TARGET_DRAIN_VS_CELERY = 10.0
TARGET_DRAIN_VS_CEILING = 0.35
TARGET_DRAIN_VS_BARE = 0.50  # issue 16: the drain at half the leanest queue a bare psycopg loop drains
TARGET_DELAY_VS_INSERT = 0.90
TARGET_BULK_RATE = 40_000.0
TARGET_PICKUP_P50_MS = 3.0
TARGET_PICKUP_P95_MS = 6.0
TARGET_RSS_MB = 80.0  # resident memory of one idle worker process
TARGET_HISTORY_VS_EMPTY = 0.85


def missing_celery() -> str | None:
    """Why the Celery peer cannot run here, with the command that fixes it; None when it can."""
    problems = []
    absent = [name for name in ("celery", "redis") if find_spec(name) is None]
    if absent:
        problems.append(f"Python package(s) {', '.join(absent)} missing: {INSTALL_PEERS}")
    if shutil.which("redis-server") is None:
        problems.append(f"redis-server not found: {INSTALL_REDIS}")
    return "; ".join(problems) or None


def missing_dtdb() -> str | None:
    needed = ["django_tasks_db", *(["django_tasks"] if django.VERSION < (6, 0) else [])]
    absent = [name for name in needed if find_spec(name) is None]
    if absent:
        return f"Python package(s) {', '.join(absent)} missing: {INSTALL_PEERS}"
    return None


def run_driver(module: str, argv: list[str]) -> dict[str, Any] | None:
    """Run a peer driver in a subprocess (its progress on our stderr); its ``RESULT {json}`` line, or None."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"!! {module} did not finish within {DRIVER_TIMEOUT_S:.0f} s; skipped", flush=True)
        return None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"!! {module} failed (exit {proc.returncode}); skipped. Its output:\n{proc.stdout}", flush=True)
        return None
    return json.loads(lines[-1].removeprefix("RESULT "))


def interleaved_enqueue(n: int) -> tuple[dict[str, float], dict[str, float]]:
    """``.delay()`` and the bare insert, alternating in rounds (ABBA: each goes first in every other round)
    so that a change of load on the machine hits both. Rates are over all rounds; latency percentiles are the
    median of the rounds' percentiles; ``round_ratios`` are each round's ``.delay()`` / bare rate."""
    per_round = max(1, n // ENQUEUE_ROUNDS)
    delays, inserts = [], []
    for index in range(ENQUEUE_ROUNDS):
        if index % 2:
            delays.append(run.bench_single_enqueue(per_round))
            inserts.append(ceiling.bench_bare_insert(per_round))
        else:
            inserts.append(ceiling.bench_bare_insert(per_round))
            delays.append(run.bench_single_enqueue(per_round))

    def combine(rounds: list[dict[str, float]]) -> dict[str, float]:
        jobs, seconds = sum(r["jobs"] for r in rounds), sum(r["seconds"] for r in rounds)
        return {
            "rate": jobs / seconds,
            "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
            "p95_ms": statistics.median(r["p95_ms"] for r in rounds),
            "jobs": jobs,
            "seconds": seconds,
            "rounds": len(rounds),
        }

    delay = combine(delays)
    delay["round_ratios"] = [d["rate"] / i["rate"] for d, i in zip(delays, inserts, strict=True)]
    return delay, combine(inserts)


def run_all(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": info, "settings": vars(args).copy()}
    print("== enqueue: djtasks .delay() and the bare job_insert, interleaved", flush=True)
    delay, insert = interleaved_enqueue(args.enqueue)
    report(f".delay() in its own transaction ({delay['jobs']})", delay["rate"], "jobs/s")
    report(f"bare job_insert + COMMIT ({insert['jobs']})", insert["rate"], "jobs/s")
    per_round = delay["round_ratios"]
    report(f"  .delay() / bare, median of {len(per_round)} rounds", 100 * statistics.median(per_round), "%")
    print(f"  (rounds from {min(per_round):.0%} to {max(per_round):.0%})", flush=True)
    if args.enqueue_only:
        results["djtasks"], results["ceiling"] = {"delay": delay}, {"insert": insert}
        results["ratios"] = ratios(results)
        print_table(results)
        return results
    print("== djtasks", flush=True)
    results["djtasks"] = {"delay": delay, **run.run_djtasks(args, single_enqueue=False)}
    print("== ceiling: bare psycopg loop on djtasks' SQL", flush=True)
    results["ceiling"] = {"insert": insert}
    results["ceiling"]["drain"] = d = ceiling.bench_ceiling_drain(args.jobs, processes=args.processes)
    report(f"ceiling: drain {args.jobs}, {args.processes} procs x {d['batch']}/claim", d["rate"], "jobs/s")
    if args.ceiling_k1_jobs:
        results["ceiling"]["drain_k1"] = d1 = ceiling.bench_ceiling_drain(
            args.ceiling_k1_jobs, processes=args.processes, batch=1
        )
        report(f"ceiling: drain {args.ceiling_k1_jobs}, {args.processes} procs x 1/claim", d1["rate"], "jobs/s")
    print("== bare-SQL ceiling: the leanest queue table and SQL (bench/bare_sql.py)", flush=True)
    b = bare_sql.bench_bare_sql_drain(args.jobs, processes=args.processes)
    results["bare"] = {"drain": b}
    report(f"bare-SQL ceiling: drain {args.jobs}, {args.processes} procs x {b['batch']}/claim", b["rate"], "jobs/s")
    if args.drain_pairs:
        print(f"== djtasks drain and bare-SQL drain, alternating, {args.drain_pairs} pairs", flush=True)
        results["pairs"] = pairs = paired_drains(args.jobs, args.processes, args.threads, args.drain_pairs)
        for dj, bare in zip(pairs["djtasks"], pairs["bare"], strict=True):
            print(f"  djtasks {dj:9,.0f}  bare-SQL {bare:9,.0f} jobs/s  ({dj / bare:.0%})", flush=True)
        report("  djtasks / bare-SQL, median of the pairs", 100 * statistics.median(pairs["ratios"]), "%")
    if args.peers:
        driver_args = ["--jobs", str(args.jobs), "--enqueue", str(args.enqueue), "--samples", str(args.samples)]
        for key, title, missing, module, extra in (
            ("celery", "Celery + Redis", missing_celery, "bench.peers.celery_bench", ["--concurrency", "2"]),
            ("dtdb", "django-tasks-db", missing_dtdb, "bench.peers.dtdb_bench", ["--processes", "2"]),
        ):
            print(f"== {title}", flush=True)
            why = missing()
            if why:
                print(f"!! {title} skipped: {why}", flush=True)
                results[key] = {"skipped": why}
                continue
            checkpoint()
            results[key] = run_driver(module, driver_args + extra) or {"skipped": "the driver failed (see above)"}
    results["ratios"] = ratios(results)
    print_table(results)
    return results


def _get(results: dict[str, Any], *path: str) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def paired_drains(n: int, processes: int, threads: int, pairs: int) -> dict[str, list[float]]:
    """The djtasks drain (a fresh ``runworker``) and the bare-SQL drain, one after the other, ``pairs`` times,
    each going first in every other pair: a change of load on the machine moves both figures of a pair alike,
    so the pair's ratio holds where a single run of each does not (run alone, either rate varies by 20%)."""
    out: dict[str, list[float]] = {"djtasks": [], "bare": [], "ratios": []}
    for i in range(pairs):
        rates = {}
        for which in ("bare", "djtasks") if i % 2 == 0 else ("djtasks", "bare"):
            if which == "bare":
                rates[which] = bare_sql.bench_bare_sql_drain(n, processes=processes)["rate"]
            else:
                clear_jobs()
                rates[which] = run.drain_once(n, processes, threads)["rate"]
        out["djtasks"].append(rates["djtasks"])
        out["bare"].append(rates["bare"])
        out["ratios"].append(rates["djtasks"] / rates["bare"])
    clear_jobs()
    return out


def _bare_ratio(results: dict[str, Any]) -> float | None:
    """The median of the alternating pairs' ratios when they ran (``--drain-pairs``), else the one drain of
    this run against the one bare-SQL drain."""
    pairs = results.get("pairs", {}).get("ratios")
    if pairs:
        return statistics.median(pairs)
    return _ratio(_get(results, "djtasks", "drain", "rate"), _get(results, "bare", "drain", "rate"))


def _delay_ratio(results: dict[str, Any]) -> float | None:
    """The median of the interleaved rounds' ratios (one hiccup on the machine does not decide it); a run
    without rounds (a separate ``.delay()`` and ceiling) falls back to the ratio of the two rates."""
    rounds = results.get("djtasks", {}).get("delay", {}).get("round_ratios")
    if rounds:
        return statistics.median(rounds)
    return _ratio(_get(results, "djtasks", "delay", "rate"), _get(results, "ceiling", "insert", "rate"))


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ratio the issue asks for, with its target and whether this run met it (None: not measured)."""
    drain = _get(results, "djtasks", "drain", "rate")
    p50, p95 = _get(results, "djtasks", "pickup", "p50_ms"), _get(results, "djtasks", "pickup", "p95_ms")
    bulk = _get(results, "djtasks", "bulk", "rate")
    rows: list[tuple[str, float | None, str, str, float | None]] = [
        # (label, value, unit, target text, threshold: value >= threshold)
        (
            "djtasks drain / Celery+Redis drain",
            _ratio(drain, _get(results, "celery", "drain", "rate")),
            "x",
            f">= {TARGET_DRAIN_VS_CELERY:g}x",
            TARGET_DRAIN_VS_CELERY,
        ),
        (
            "djtasks drain / ceiling drain (K per claim)",
            _ratio(drain, _get(results, "ceiling", "drain", "rate")),
            "%",
            f">= {TARGET_DRAIN_VS_CEILING:.0%}",
            TARGET_DRAIN_VS_CEILING,
        ),
        (
            "djtasks drain / bare-SQL ceiling drain (median pair)"
            if results.get("pairs")
            else "djtasks drain / bare-SQL ceiling drain",
            _bare_ratio(results),
            "%",
            f">= {TARGET_DRAIN_VS_BARE:.0%}",
            TARGET_DRAIN_VS_BARE,
        ),
        (
            "djtasks drain / ceiling drain (1 per claim)",
            _ratio(drain, _get(results, "ceiling", "drain_k1", "rate")),
            "x",
            "",
            None,
        ),
        ("djtasks drain / django-tasks-db drain", _ratio(drain, _get(results, "dtdb", "drain", "rate")), "x", "", None),
        (
            ".delay() rate / bare job_insert rate (median round)",
            _delay_ratio(results),
            "%",
            f">= {TARGET_DELAY_VS_INSERT:.0%}",
            TARGET_DELAY_VS_INSERT,
        ),
        ("bulk enqueue, jobs/s", bulk, "", f">= {TARGET_BULK_RATE:,.0f}", TARGET_BULK_RATE),
        (
            "drain with finished-row history / empty table",
            _ratio(
                _get(results, "djtasks", "history", "drain", "rate"),
                _get(results, "djtasks", "history", "empty", "rate"),
            ),
            "%",
            f">= {TARGET_HISTORY_VS_EMPTY:.0%}",
            TARGET_HISTORY_VS_EMPTY,
        ),
        (
            "Celery pick-up p50 / djtasks pick-up p50",
            _ratio(_get(results, "celery", "pickup", "p50_ms"), p50),
            "x",
            "",
            None,
        ),
    ]
    out = [
        {
            "ratio": label,
            "value": value,
            "unit": unit,
            "target": target,
            "met": None if value is None or threshold is None else value >= threshold,
        }
        for label, value, unit, target, threshold in rows
    ]
    for label, value, limit, unit in (
        ("idle pick-up p50, ms", p50, TARGET_PICKUP_P50_MS, "ms"),
        ("idle pick-up p95, ms", p95, TARGET_PICKUP_P95_MS, "ms"),
        ("worker process RSS at rest, MB", _get(results, "djtasks", "rss", "max_mb"), TARGET_RSS_MB, "MB"),
    ):
        out.append(
            {
                "ratio": label,
                "value": value,
                "unit": unit,
                "target": f"<= {limit:g} {unit}",
                "met": None if value is None else value <= limit,
            }
        )
    return out


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0%}"
    if unit == "x":
        return f"{value:,.2f}x"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f}"


def _pair(results: dict[str, Any], system: str, figure: str) -> str:
    a, b = _get(results, system, figure, "p50_ms"), _get(results, system, figure, "p95_ms")
    if a is None or b is None:
        return "-"
    return f"{a:,.1f} / {b:,.1f}"


def print_table(results: dict[str, Any]) -> None:
    systems = [("djtasks", "djtasks"), ("ceiling", "ceiling"), ("celery", "Celery+Redis"), ("dtdb", "dj-tasks-db")]
    hist_rows = _get(results, "djtasks", "history", "fill", "rows")
    jobs = _get(results, "djtasks", "drain", "jobs")

    def enqueue(system: str) -> str:  # the ceiling's single enqueue is the bare insert
        return "insert" if system == "ceiling" else "delay"

    rows = [
        ("single enqueue, own transaction (jobs/s)", lambda s: _fmt(_get(results, s, enqueue(s), "rate"))),
        ("  its latency p50 / p95 (ms)", lambda s: _pair(results, s, enqueue(s))),
        ("bulk enqueue (jobs/s)", lambda s: _fmt(_get(results, s, "bulk", "rate"))),
        (f"drain {_fmt(jobs)} no-op jobs (jobs/s)", lambda s: _fmt(_get(results, s, "drain", "rate"))),
        (
            f"  same, {_fmt(hist_rows)} finished rows in the table",
            lambda s: _fmt(_get(results, s, "history", "drain", "rate")),
        ),
        ("  same, 1 job per claim (jobs/s)", lambda s: _fmt(_get(results, s, "drain_k1", "rate"))),
        ("idle pick-up p50 / p95 (ms)", lambda s: _pair(results, s, "pickup")),
    ]
    print("\n== results (one run, same machine and cluster)", flush=True)
    print(f"{'figure':<46}" + "".join(f"{title:>15}" for _, title in systems))
    for label, cell in rows:
        cells = [cell(key) for key, _ in systems]
        if any(c != "-" for c in cells):  # figures this run did not measure are left out
            print(f"{label:<46}" + "".join(f"{c:>15}" for c in cells))
    for key, title in systems[2:]:
        if "skipped" in results.get(key, {}):
            print(f"  {title}: skipped ({results[key]['skipped']})")
        elif key in results:
            print(f"  {title}: {results[key].get('settings', '')}; {results[key].get('versions', '')}")
    print(f"\n{'ratio / figure':<50}{'value':>12}{'target':>16}   met")
    for row in results["ratios"]:
        if row["value"] is None:
            continue
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        print(f"{row['ratio']:<50}{_fmt(row['value'], row['unit']):>12}{row['target']:>16}   {met}")
    sys.stdout.flush()
