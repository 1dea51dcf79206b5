"""bench.settings for the soak (``bench/soak.py``): short result TTLs so the pruner really deletes during the
run, and a periodic job that ``runbeat`` fires every ``BENCH_SOAK_TICK_S`` seconds."""

import os

from bench.settings import *  # noqa: F403

DJTASKS = {
    "QUEUES": {"default": {}},
    "RESULT_TTL": float(os.environ.get("BENCH_SOAK_TTL_S", "60")),
    "FAILED_RESULT_TTL": float(os.environ.get("BENCH_SOAK_TTL_S", "60")) * 2,
    "BEAT_SCHEDULE": {
        "soak-tick": {"job": "bench.tasks.soak_tick", "every": float(os.environ.get("BENCH_SOAK_TICK_S", "5"))},
    },
}
