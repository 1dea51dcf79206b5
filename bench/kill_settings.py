"""bench.settings with a short WORKER_TIMEOUT, so kill_charge.py's whole-runworker case is rescued quickly."""

from bench.settings import *  # noqa: F403

DJTASKS = {"QUEUES": {"default": {}}, "HEARTBEAT_INTERVAL": 1, "WORKER_TIMEOUT": 5}
