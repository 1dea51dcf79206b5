"""Schedule arithmetic: when a periodic schedule fires. Pure: every function takes the time it reasons about.

Three kinds of timing, exactly one per schedule:

- ``cron``: a standard 5-field expression (or ``@hourly``/``@daily``/... macros) read in the schedule's time
  zone; parsing is croniter's, never ours. Daylight-saving policy, for an expression matching local time *t*:

  * *t* does not exist (spring forward, e.g. 02:30 in Europe/Paris on the last Sunday of March): it fires once,
    at the first valid instant after the gap (03:00 local), merged with any tick that falls there;
  * *t* exists twice (fall back, e.g. 01:30 in America/New_York on the first Sunday of November): it fires once,
    at the first occurrence; except that an expression whose minute or hour field starts with ``*``
    (``*/15 * * * *``, ``30 * * * *``) keeps running on real time through the repeated hour, so it fires at
    both occurrences (cron's own rule for "wildcard" jobs). A fixed-time job never runs twice in one night.

- ``every``: a fixed interval (at least ``MIN_INTERVAL_S``). Ticks are multiples of the interval since the Unix
  epoch, so every scheduler on every host computes the same ticks and time zones do not matter.
- ``at``: one aware datetime; the schedule fires once.

``plan()`` decides what one firing of a due schedule enqueues, following the schedule's ``catch_up`` policy:
``"skip"`` (missed ticks are merged into one fire, for the latest of them) or ``"all"`` (one job per missed tick,
``MAX_TICKS_PER_FIRE`` at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from . import durations

MIN_INTERVAL_S = 1.0
MAX_TICKS_PER_FIRE = 100  # catch_up="all" enqueues at most this many missed ticks per fire; the rest next pass
FOLD_MARGIN = timedelta(hours=4)  # > the largest DST shift (2 h at Antarctica/Troll): where a repeated tick hides
MAX_CRON_STEPS = 100_000  # guard against pathological expressions while looking for the next tick

CATCH_UP_SKIP = "skip"
CATCH_UP_ALL = "all"
CATCH_UP_POLICIES = (CATCH_UP_SKIP, CATCH_UP_ALL)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROBE = datetime(2000, 1, 1)  # naive on purpose: croniter iterates local wall-clock times


def validate_cron(expression: str) -> str:
    """Return the expression normalised (macros expanded, single spaces); raise ``ValueError`` saying what is
    wrong with it. Only standard 5-field expressions are accepted (no seconds or year field)."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression must be a string, got {type(expression).__name__}")
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if text.startswith("@"):
        raise ValueError(f"cron expression {expression!r}: unknown macro; use one of {', '.join(MACROS)}")
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expression!r} has {len(fields) if text else 0} field(s); expected 5: "
            "minute hour day-of-month month day-of-week, e.g. '*/5 * * * *' (use every= for seconds)"
        )
    try:
        croniter(text, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {expression!r} never matches a date") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` if there is no such zone."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone must be an IANA name such as 'Europe/Paris', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'") from None


def interval_micros(every: float | timedelta) -> int:
    """An interval in whole microseconds; ``ValueError`` below ``MIN_INTERVAL_S``."""
    try:
        seconds = durations.seconds(every, "every")
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not seconds >= MIN_INTERVAL_S:  # also rejects NaN
        raise ValueError(f"every must be at least {MIN_INTERVAL_S:g} second(s), got {seconds:g}")
    return round(seconds * 1_000_000)


def require_aware(value: datetime, what: str = "at") -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} is a naive datetime ({value.isoformat()}); pass an aware one, "
            "e.g. datetime(2030, 1, 1, 9, 0, tzinfo=ZoneInfo('Europe/Paris'))"
        )
    return value


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: exactly one of ``cron`` (read in ``tz``), ``every_us`` or ``at``."""

    cron: str | None = None
    every_us: int | None = None
    at: datetime | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.cron, self.every_us, self.at)) != 1:
            raise ValueError("a schedule needs exactly one of cron=, every= or at=")

    @classmethod
    def make(
        cls,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        at: datetime | None = None,
        tz: str | ZoneInfo = "UTC",
    ) -> Timing:
        """Validate user input into a ``Timing``; ``ValueError`` names what is wrong."""
        given = [name for name, value in (("cron", cron), ("every", every), ("at", at)) if value not in (None, "")]
        if len(given) != 1:
            raise ValueError(
                "a schedule needs exactly one of cron=, every= or at=" + (f" (got {', '.join(given)})" if given else "")
            )
        return cls(
            cron=validate_cron(cron) if cron else None,
            every_us=interval_micros(every) if every is not None else None,
            at=require_aware(at).astimezone(UTC) if at is not None else None,
            tz=tz if isinstance(tz, ZoneInfo) else zone(tz),
        )

    @property
    def wildcard(self) -> bool:
        """Cron's rule: a minute or hour field starting with ``*`` runs on real time through a repeated hour."""
        if self.cron is None:
            return False
        minute, hour = self.cron.split(" ")[:2]
        return minute.startswith("*") or hour.startswith("*")

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz.key})"
        if self.every_us is not None:
            return f"every {self.every_us / 1_000_000:g} s"
        assert self.at is not None
        return f"once at {self.at.isoformat()}"


def _utc(value: datetime) -> datetime:
    return require_aware(value, "time").astimezone(UTC)


def _transition_after(naive: datetime, tz: ZoneInfo) -> datetime:
    """The first valid instant after the DST gap that swallows the local time ``naive``."""
    low = int((naive.replace(tzinfo=tz, fold=1).astimezone(UTC) - _EPOCH).total_seconds())
    high = int((naive.replace(tzinfo=tz, fold=0).astimezone(UTC) - _EPOCH).total_seconds())

    def offset(seconds: int) -> timedelta | None:
        return (_EPOCH + timedelta(seconds=seconds)).astimezone(tz).utcoffset()

    before = offset(low)
    while high - low > 1:  # the offset changes somewhere in (low, high]: find the second it does
        mid = (low + high) // 2
        if offset(mid) == before:
            low = mid
        else:
            high = mid
    return _EPOCH + timedelta(seconds=high)


def _instants(naive: datetime, tz: ZoneInfo, both_folds: bool) -> list[datetime]:
    """The UTC instants at which the local time ``naive`` fires (see the module's DST policy)."""
    first = naive.replace(tzinfo=tz, fold=0)
    first_utc = first.astimezone(UTC)
    if first_utc.astimezone(tz).replace(tzinfo=None) != naive:  # in a gap: it does not exist
        return [_transition_after(naive, tz)]
    second_utc = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if both_folds and second_utc != first_utc:  # exists twice and runs on real time
        return [first_utc, second_utc]
    return [first_utc]


def _next_cron(timing: Timing, after: datetime) -> datetime:
    tz = timing.tz
    # Iterate local wall-clock times. Their first instants never go backwards, so once one is past the best
    # candidate nothing later can beat it; start early enough to meet the second occurrence of a repeated hour.
    start = after.astimezone(tz).replace(tzinfo=None) - FOLD_MARGIN
    it = croniter(timing.cron, start)
    best: datetime | None = None
    for _ in range(MAX_CRON_STEPS):
        naive = it.get_next(datetime)
        instants = _instants(naive, tz, timing.wildcard)
        if best is not None and instants[0] > best:
            return best
        for instant in instants:
            if instant > after and (best is None or instant < best):
                best = instant
    raise ValueError(f"{timing.describe()}: no tick found after {after.isoformat()}")


def next_fire(timing: Timing, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (aware, returned in UTC); ``None`` when there is none."""
    after = _utc(after)
    if timing.at is not None:
        return timing.at if timing.at > after else None
    if timing.every_us is not None:
        elapsed = (after - _EPOCH) // timedelta(microseconds=1)
        return _EPOCH + timedelta(microseconds=(elapsed // timing.every_us + 1) * timing.every_us)
    return _next_cron(timing, after)


def first_fire(timing: Timing, now: datetime) -> datetime | None:
    """``next_fire_at`` of a new (or re-timed, or re-enabled) schedule: the next tick after ``now``; a one-off
    ``at`` in the past is still due once."""
    if timing.at is not None:
        return timing.at
    return next_fire(timing, now)


def last_fire_at_or_before(timing: Timing, now: datetime, since: datetime) -> datetime:
    """The latest tick in ``[since, now]``, where ``since`` is a tick not after ``now``."""
    now, since = _utc(now), _utc(since)
    if timing.every_us is not None:
        step = timedelta(microseconds=timing.every_us)
        return since + ((now - since) // step) * step
    if timing.at is not None:
        return since
    # Look back over growing windows so a long outage costs a few steps, not one per missed tick.
    for window in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=32)):
        start = max(since, now - window)
        tick = since if start == since else next_fire(timing, start - timedelta(microseconds=1))
        if tick is not None and tick <= now:
            break
    else:
        tick = since
    while (following := next_fire(timing, tick)) is not None and following <= now:
        tick = following
    return tick


@dataclass(frozen=True)
class Plan:
    """What one firing of a due schedule does.

    ``ticks``: the tick times to enqueue a job for (oldest first; empty when all had expired);
    ``next_fire_at``: the schedule's next tick (``None``: it never fires again); ``skipped``: due ticks were merged
    away (``catch_up="skip"``, or a unique schedule); ``expired``: due ticks were dropped because their
    ``expires`` had already passed.
    """

    ticks: tuple[datetime, ...]
    next_fire_at: datetime | None
    skipped: bool = False
    expired: bool = False


def plan(
    timing: Timing,
    due: datetime,
    now: datetime,
    *,
    catch_up: str = CATCH_UP_SKIP,
    expires: timedelta | None = None,
    unique: bool = False,
    limit: int = MAX_TICKS_PER_FIRE,
) -> Plan:
    """Plan the firing of a schedule whose ``next_fire_at`` (``due``) is not after ``now``.

    ``catch_up="skip"``: one job, for the latest tick that is due; the schedule resumes at the first tick after
    ``now``. ``catch_up="all"``: one job per due tick from ``due`` on, at most ``limit`` of them; if more are due
    the returned ``next_fire_at`` is still due and the next pass goes on from there. A tick whose ``expires``
    has passed is not enqueued (its job would be cancelled unrun). ``unique=True`` keeps only the latest tick.
    """
    due, now = _utc(due), _utc(now)
    if due > now:
        raise ValueError(f"plan() of a tick not yet due: {due.isoformat()} > {now.isoformat()}")
    if catch_up not in CATCH_UP_POLICIES:
        raise ValueError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    skipped = expired = False
    if catch_up == CATCH_UP_SKIP:
        latest = last_fire_at_or_before(timing, now, due)
        ticks, skipped, following = [latest], latest != due, next_fire(timing, now)
    else:
        start = due
        if expires is not None and due + expires <= now:
            # Jump over the ticks that expired unfired instead of walking through them one by one.
            jumped, expired = next_fire(timing, now - expires), True
            if jumped is None or jumped > now:
                return Plan((), next_fire(timing, now), expired=True)
            start = jumped
        ticks = [start]
        while len(ticks) < limit and (tick := next_fire(timing, ticks[-1])) is not None and tick <= now:
            ticks.append(tick)
        following = next_fire(timing, ticks[-1])
    live = [t for t in ticks if expires is None or t + expires > now]
    expired = expired or len(live) < len(ticks)
    if unique and len(live) > 1:
        live, skipped = live[-1:], True
    return Plan(tuple(live), following, skipped=skipped, expired=expired)
