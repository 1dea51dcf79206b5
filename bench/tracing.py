"""What OpenTelemetry tracing costs per enqueue and per job: CPU time of the two hooks' call sites, no database.

    python bench/tracing.py [--calls 20000] [--rounds 7]

Times ``Job._row()`` (every enqueue path builds its row there; the hook writes the trace context) and
``executor.execute()`` of a no-op job (every attempt runs through it; the hook makes the span), each in a fresh
process per mode:

- ``absent``: ``opentelemetry`` cannot be imported (as if not installed): each hook is one ``is None`` check;
- ``api``: ``opentelemetry-api`` installed, no SDK (no TracerProvider): no span to carry, none made;
- ``sdk``: an SDK TracerProvider without exporters, enqueue inside a span, the job row carrying its context:
  what tracing costs when it is on, before any exporter's own cost.

The best of ``--rounds`` rounds of ``--calls`` calls (CPU time: steadier than wall time on a shared machine).
Copied into a checkout from before tracing, its ``absent`` line is the baseline for the cost of the hooks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("absent", "api", "sdk")

BLOCK_OPENTELEMETRY = """
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Block())
"""


def per_call(fn, calls: int, rounds: int) -> float:
    """Best CPU seconds per call of ``fn`` over ``rounds`` rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best


def measure(mode: str, calls: int, rounds: int) -> dict:
    """In this process (a fresh one per mode): set up ``mode``, then time the two call sites."""
    if mode == "absent":
        exec(BLOCK_OPENTELEMETRY, {"sys": sys})
    # Django with the benchmark settings, but never connected: nothing timed here queries.
    os.environ["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/none"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django.utils import timezone

    from bench.tasks import noop
    from djtasks.ids import uuid7
    from djtasks.worker.executor import execute

    try:
        from djtasks import tracing
    except ImportError:  # a checkout from before tracing (copy this script there to compare)
        tracing = None

    span = None
    if mode == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
        span = trace.get_tracer("bench").start_as_current_span("request")
        span.__enter__()
    now = timezone.now()
    row = {
        "id": uuid7(),
        "name": noop.name,
        "queue": "default",
        "priority": 0,
        "status": "running",
        "args": "[]",
        "kwargs": "{}",
        "attempt": 1,
        "max_attempts": 1,
        "enqueued_at": now,
        "run_at": now,
        "time_limit": None,
        "soft_time_limit": None,
        "workflow": False,
        "trace_context": tracing.carrier() if tracing is not None and tracing.TRACER is not None else None,
    }
    figures = {
        "row_us": per_call(lambda: noop._row((), None, now), calls, rounds) * 1e6,
        "execute_us": per_call(lambda: execute(row, manage_connections=False), calls, rounds) * 1e6,
        "carried": row["trace_context"] is not None,
        "otel_modules": sum(1 for m in sys.modules if m.startswith("opentelemetry")),
    }
    if span is not None:
        span.__exit__(None, None, None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, in the child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.calls, args.rounds)))
        return
    print(f"{'mode':<8} {'Job._row()':>12} {'execute()':>12}  notes")
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--calls", str(args.calls), "--rounds", str(args.rounds)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        f = json.loads(out.strip().splitlines()[-1])
        notes = f"opentelemetry modules loaded: {f['otel_modules']}; context in the row: {f['carried']}"
        print(f"{mode:<8} {f['row_us']:>9.2f} us {f['execute_us']:>9.2f} us  {notes}")


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(ROOT))
    main()
