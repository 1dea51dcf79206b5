"""How many jobs a worker process may claim beyond its free threads, from how long its jobs take.

Claiming one job per free thread costs a round trip per handful of jobs; claiming ahead (prefetch) lets one
statement fetch a hundred short jobs. But jobs claimed ahead wait in this process while another worker may
be idle, so the prefetch is bounded by time: it is sized so that the jobs claimed ahead should all have
started within ``PREFETCH_WINDOW_S``, judging by the slowest job name among those just claimed. A name never
seen before counts as slow, so a new or long job is never prefetched, and a long job claimed beside short
ones stalls nothing: every free thread takes the next waiting job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

PREFETCH_WINDOW_S = 0.02  # prefetched jobs should all have started within about this long
PREFETCH_MAX = 200  # jobs claimed ahead per worker process, at most
UNKNOWN_DURATION_S = 1.0  # a job name not seen yet is assumed this slow (no prefetch for it)
EWMA_WEIGHT = 0.2  # weight of the newest run in a job name's mean duration


class Durations:
    """Mean run time per job name (exponentially weighted), as observed by this process."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            mean = self._mean.get(name)
            self._mean[name] = seconds if mean is None else mean + EWMA_WEIGHT * (seconds - mean)

    def expected(self, name: str) -> float:
        return self._mean.get(name, UNKNOWN_DURATION_S)

    def prefetch(self, threads: int, names: Iterable[str]) -> int:
        """Jobs to claim beyond the free threads when the next claim resembles one of ``names``."""
        slowest = max((self.expected(name) for name in names), default=UNKNOWN_DURATION_S)
        if slowest <= 0:
            return PREFETCH_MAX
        return max(0, min(PREFETCH_MAX, int(PREFETCH_WINDOW_S * threads / slowest)))
