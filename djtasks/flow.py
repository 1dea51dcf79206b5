"""Flow-control arithmetic (pure; time is a parameter): rate-limit strings, the sliding-window rate limiter
and how many jobs a limited queue may start now.

The rate limiter is the generic cell rate algorithm (virtual scheduling). Its whole state is one timestamp
per queue, ``tat`` (the theoretical start time of the next job), kept in the queue's ``djtasks_queue`` row
and advanced by every claim under that row's lock. A limit of ``count`` starts per ``period`` becomes an
emission interval ``T = period / (count - burst + 1)`` with a tolerance of ``(burst - 1) * T``:

- any ``count + 1`` starts span at least ``(count + 1 - burst) * T = period``, so no window of ``period``
  seconds, wherever it begins (sliding, not aligned on the clock), holds more than ``count`` starts. A token
  bucket holding a whole period's tokens would allow ``2 * count`` (a full bucket, then the refill);
- starts are spread ``T`` apart, in groups of at most ``burst``. The tolerance also absorbs a claim that
  comes a little late (a worker woke a few milliseconds after the next start was due) instead of losing
  that time for good. ``burst`` is 1 below 20 starts per period, 2 up to 200, then 1% of the limit; the
  long-run rate is ``count - burst + 1``: the whole limit below 20, at least 95% of it above, 99% from 200.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

PERIODS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
BURST_FRACTION = 0.01  # starts allowed together, as a fraction of the limit (at least 2 from BURST_FROM)
BURST_FROM = 20  # below this many starts per period, one at a time (the full limit is reachable)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` starts in any window of ``period`` seconds."""

    count: int
    period: float
    text: str  # as written: "100/m", or "2.5/s" for a number of starts per second

    @property
    def burst(self) -> int:
        return 1 if self.count < BURST_FROM else max(2, int(self.count * BURST_FRACTION))

    @property
    def interval(self) -> float:
        """Seconds between starts (the emission interval ``T``)."""
        return self.period / (self.count - self.burst + 1)

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


def parse_rate(value: object) -> RateLimit:
    """``"100/m"``, ``"10/s"``, ``"500/h"``, or a positive number of starts per second (``2``, ``0.5``).

    Raises ``ValueError`` with the value in the message (callers add the queue name)."""
    if isinstance(value, bool):
        raise ValueError(f"rate_limit must be like '100/m', '10/s', '500/h' or a number per second, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"rate_limit must be a positive number of starts per second, got {value!r}")
        if float(value).is_integer():
            return RateLimit(int(value), 1.0, f"{int(value)}/s")
        # 0.5/s is one start every 2 s: keep whole counts by stretching the period.
        return RateLimit(1, 1.0 / float(value), f"{float(value):g}/s")
    if isinstance(value, str):
        match = _RATE_RE.match(value)
        if match and int(match.group(1)) > 0:
            count, unit = int(match.group(1)), match.group(2)
            return RateLimit(count, PERIODS_S[unit], f"{count}/{unit}")
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return parse_rate(number)
    raise ValueError(f"rate_limit must be like '100/m', '10/s', '500/h' or a number per second, got {value!r}")


@dataclass(frozen=True)
class Allowance:
    """What the rate limiter allows at ``now``: ``starts`` jobs, and if none, ``wait`` seconds until one."""

    starts: int
    wait: float


def rate_allowance(rate: RateLimit, tat: datetime | None, now: datetime) -> Allowance:
    """How many jobs may start at ``now`` given the queue's ``tat`` (``None``: nothing started yet)."""
    if tat is None or tat < now:
        tat = now
    ahead = (tat - now).total_seconds()  # how far the schedule runs ahead of the clock
    if ahead > rate.tolerance:
        return Allowance(0, ahead - rate.tolerance)
    return Allowance(int((rate.tolerance - ahead) / rate.interval + 1e-9) + 1, 0.0)


def advance(rate: RateLimit, tat: datetime | None, now: datetime, starts: int) -> datetime | None:
    """The queue's ``tat`` after ``starts`` jobs started at ``now`` (unchanged when none did)."""
    if starts <= 0:
        return tat
    base = now if tat is None or tat < now else tat
    return base + timedelta(seconds=starts * rate.interval)


@dataclass(frozen=True)
class Limits:
    """A queue's effective run-time options (or a job name's, with only ``concurrency``)."""

    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    paused: bool = False

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None


def claim_cap(limits: Limits, *, running: int, tat: datetime | None, now: datetime, free: int) -> Allowance:
    """How many jobs of a limited queue (or job name) this worker may claim at ``now`` with ``free`` threads
    idle, and if none, how long until the rate limit allows one (0 when only a finishing job can help)."""
    if limits.paused or free <= 0:
        return Allowance(0, 0.0)
    cap = free
    if limits.concurrency is not None:
        cap = min(cap, max(0, limits.concurrency - running))
    if limits.rate_limit is not None:
        allowed = rate_allowance(limits.rate_limit, tat, now)
        if allowed.starts == 0:
            return allowed
        cap = min(cap, allowed.starts)
    return Allowance(cap, 0.0)
