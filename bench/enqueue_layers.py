"""Where a single enqueue's time goes, layer by layer: wall and CPU time per call.

    python bench/enqueue_layers.py [--calls 1000] [--rounds 6]

Each layer adds one part of ``.delay()`` to the one before, all running djtasks' ``job_insert`` in
autocommit (one INSERT + NOTIFY and one durable COMMIT per call):

- ``bare``: a bare psycopg connection on psycopg's defaults (prepared after 5 runs): the ceiling's insert;
- ``django-conn``: the same statement on Django's connection, prepared, through one kept psycopg cursor;
- ``execute_prepared``: ``djtasks.cursors.execute_prepared`` (adds Django's checks and exception classes);
- ``delay``: ``noop.delay()`` (adds validation, serialization, the id, signals and the ``JobResult``).

CPU time (``time.process_time``) is far steadier than wall time on a shared machine, and the wall-time
difference between two layers is mostly their CPU difference: the server's work is the same for all.
Layers run interleaved, ``--rounds`` times ``--calls`` calls each.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from django.core.management import call_command

from bench.ceiling import insert_params
from bench.common import checkpoint, clear_jobs, connection, psycopg_params
from bench.tasks import noop
from djtasks import cursors
from djtasks.store import queries

WARM_UP_CALLS = 20  # per layer and round: the statement is prepared before the clock starts


def layers() -> dict[str, Callable[[], None]]:
    sql = queries()["job_insert"]
    bare = psycopg.connect(**psycopg_params(), autocommit=True, application_name="djtasks-bench-layers").cursor()
    connection.ensure_connection()
    conn = connection.connection
    kept = psycopg.Cursor(conn)

    def django_conn() -> None:
        conn.prepare_threshold = 0
        try:
            kept.execute(sql, insert_params())
        finally:
            conn.prepare_threshold = None

    return {
        "bare": lambda: bare.execute(sql, insert_params()),
        "django-conn": django_conn,
        "execute_prepared": lambda: cursors.execute_prepared(sql, insert_params()),
        "delay": lambda: noop.delay(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per layer and round")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    args = parser.parse_args(argv)
    call_command("migrate", verbosity=0)
    funcs = layers()
    wall = dict.fromkeys(funcs, 0.0)
    cpu = dict.fromkeys(funcs, 0.0)
    for _ in range(args.rounds):
        for name, func in funcs.items():
            clear_jobs()
            checkpoint()
            for _ in range(WARM_UP_CALLS):
                func()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(args.calls):
                func()
            wall[name] += time.perf_counter() - wall0
            cpu[name] += time.process_time() - cpu0
    clear_jobs()
    calls = args.calls * args.rounds
    print(f"{'layer':<18}{'calls/s':>10}{'vs bare':>9}{'wall µs':>10}{'CPU µs':>9}")
    for name in funcs:
        print(
            f"{name:<18}{calls / wall[name]:>10,.0f}{wall['bare'] / wall[name]:>9.0%}"
            f"{wall[name] / calls * 1e6:>10.1f}{cpu[name] / calls * 1e6:>9.1f}"
        )


if __name__ == "__main__":
    main()
