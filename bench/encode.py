"""What checking a call costs: CPU time of building one job row (``Job._row``: the arguments through the
encoder, the options through their checks) for typical argument shapes, and of one ``bulk_delay`` row.

    python bench/encode.py [--calls 2000] [--repeat 7]

No SQL is sent; the best of ``--repeat`` runs is shown, which is steady even on a loaded machine (the
database round trip of a real ``.delay()``, about 300 µs here, is what ``bench/run.py --enqueue-only``
measures). Compare two commits by running this on each.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.utils import timezone

import bench.common  # noqa: F401 - sets Django up
from bench.tasks import noop
from djtasks import serialization

SHAPES: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "no arguments": ((), {}),
    "one int": ((42,), {}),
    "small mix": ((42, "hello world", 3.5), {"user_id": 7, "tags": ["a", "b"]}),
    "1,000 ints": ((list(range(1000)),), {}),
    "10,000 non-ASCII chars": (("é" * 10_000,), {}),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    now = timezone.now()
    print(f"{'shape':<26}{'row µs':>9}{'encoder µs':>12}")
    for name, (a, k) in SHAPES.items():
        row = min(timeit.repeat(lambda a=a, k=k: noop._row(a, k, now), number=args.calls, repeat=args.repeat))
        enc = min(timeit.repeat(lambda a=a, k=k: serialization.dumps_args(a, k), number=args.calls, repeat=args.repeat))
        print(f"{name:<26}{row / args.calls * 1e6:>9.2f}{enc / args.calls * 1e6:>12.2f}")


if __name__ == "__main__":
    main()
