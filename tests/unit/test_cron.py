"""Schedule arithmetic (djtasks.cron): pure functions of their time arguments; no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from djtasks.cron import (
    MAX_TICKS_PER_FIRE,
    Timing,
    first_fire,
    last_fire_at_or_before,
    next_fire,
    plan,
    validate_cron,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def fires(timing: Timing, start: datetime, end: datetime) -> list[datetime]:
    """Every tick in (start, end]."""
    out, t = [], start
    while (t := next_fire(timing, t)) is not None and t <= end:
        out.append(t)
    return out


def local(values: list[datetime], tz: ZoneInfo) -> list[str]:
    return [v.astimezone(tz).strftime("%H:%M%z") for v in values]


def day(tz: ZoneInfo, y: int, m: int, d: int) -> tuple[datetime, datetime]:
    """The local calendar day as (start, end] in aware datetimes."""
    start = datetime(y, m, d, tzinfo=tz)
    return start, datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), tzinfo=tz)


# -- cron ---------------------------------------------------------------------------------------------------
def test_cron_next_fire_is_strictly_after_and_in_utc():
    timing = Timing.make(cron="*/5 * * * *", tz="UTC")
    at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert next_fire(timing, at) == datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
    assert next_fire(timing, at - timedelta(microseconds=1)) == at
    assert next_fire(timing, at).tzinfo is UTC


def test_cron_is_read_in_the_schedule_zone():
    timing = Timing.make(cron="0 3 * * *", tz="Europe/Paris")
    # 03:00 in Paris in January is 02:00 UTC; in July 01:00 UTC.
    assert next_fire(timing, datetime(2030, 1, 10, tzinfo=UTC)) == datetime(2030, 1, 10, 2, tzinfo=UTC)
    assert next_fire(timing, datetime(2030, 7, 10, tzinfo=UTC)) == datetime(2030, 7, 10, 1, tzinfo=UTC)


def test_cron_macros_and_day_or_semantics():
    assert validate_cron("@hourly") == "0 * * * *"
    assert validate_cron("  0   3 * *   1-5 ") == "0 3 * * 1-5"
    # day-of-month and day-of-week both restricted: either matches (standard cron)
    timing = Timing.make(cron="0 0 13 * 5", tz="UTC")
    got = fires(timing, datetime(2030, 9, 1, tzinfo=UTC), datetime(2030, 9, 30, tzinfo=UTC))
    assert [d.day for d in got] == [6, 13, 20, 27]  # Fridays, and the 13th (a Friday too)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "invalid cron expression"),
        ("* * * *", "has 4 field"),
        ("* * * * * *", "has 6 field"),
        ("", "has 0 field"),
        ("@reboot", "unknown macro"),
        ("0 0 30 2 *", "never matches"),
        ("every minute", "field"),
    ],
)
def test_bad_cron_is_rejected_with_a_clear_message(expression, message):
    with pytest.raises(ValueError, match=message):
        validate_cron(expression)


def test_timing_needs_exactly_one_kind_and_aware_at():
    with pytest.raises(ValueError, match="exactly one"):
        Timing.make(cron="* * * * *", every=5)
    with pytest.raises(ValueError, match="exactly one"):
        Timing.make()
    with pytest.raises(ValueError, match="naive datetime"):
        Timing.make(at=datetime(2030, 1, 1, 9, 0))  # naive: the point of the test
    with pytest.raises(ValueError, match="unknown time zone"):
        Timing.make(cron="* * * * *", tz="Mars/Olympus")
    with pytest.raises(ValueError, match="at least 1"):
        Timing.make(every=0.5)


# -- DST policy: Europe/Paris and America/New_York, spring forward and fall back ------------------------------
@pytest.mark.parametrize(
    ("tz", "date", "expected"),
    [
        # spring forward: 02:30 does not exist; fires once at the first instant after the gap (03:00)
        (PARIS, (2030, 3, 31), ["03:00+0200"]),
        (NEW_YORK, (2030, 3, 10), ["03:00-0400"]),
        # fall back: 02:30 (Paris) / 01:30 (New York) happens twice; fires once, at the first occurrence
        (PARIS, (2030, 10, 27), ["02:30+0200"]),
        # an ordinary day
        (PARIS, (2030, 6, 1), ["02:30+0200"]),
    ],
)
def test_fixed_time_fires_exactly_once_on_dst_days(tz, date, expected):
    timing = Timing.make(cron="30 2 * * *", tz=tz.key)
    assert local(fires(timing, *day(tz, *date)), tz) == expected


def test_fixed_time_in_the_repeated_hour_fires_once_in_new_york():
    timing = Timing.make(cron="30 1 * * *", tz="America/New_York")
    assert local(fires(timing, *day(NEW_YORK, 2030, 11, 3)), NEW_YORK) == ["01:30-0400"]


def test_gap_ticks_merge_into_one_fire_at_the_end_of_the_gap():
    timing = Timing.make(cron="*/20 2-3 * * *", tz="Europe/Paris")
    assert local(fires(timing, *day(PARIS, 2030, 3, 31)), PARIS) == ["03:00+0200", "03:20+0200", "03:40+0200"]


def test_wildcard_expressions_keep_real_time_through_the_repeated_hour():
    timing = Timing.make(cron="*/30 * * * *", tz="America/New_York")
    start = datetime(2030, 11, 3, 0, 45, tzinfo=NEW_YORK).astimezone(UTC)
    got = fires(timing, start, start + timedelta(hours=3))  # three real hours
    assert local(got, NEW_YORK) == ["01:00-0400", "01:30-0400", "01:00-0500", "01:30-0500", "02:00-0500", "02:30-0500"]
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(got))


@pytest.mark.parametrize("tz", [PARIS, NEW_YORK])
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 1 * * *", "15 3 * * *", "0 0 * * *"])
def test_a_daily_expression_fires_once_per_local_day_all_year(tz, expression):
    timing = Timing.make(cron=expression, tz=tz.key)
    start, _ = day(tz, 2030, 1, 1)
    got = fires(timing, start, start + timedelta(days=365))
    dates = [t.astimezone(tz).date() for t in got]
    assert len(dates) == len(set(dates)) == 365


# -- intervals and one-offs ---------------------------------------------------------------------------------
def test_interval_ticks_are_multiples_since_the_epoch():
    timing = Timing.make(every=timedelta(minutes=15))
    at = datetime(2030, 3, 31, 0, 7, 12, 345, tzinfo=PARIS)  # zone irrelevant: real time
    first = next_fire(timing, at)
    assert first == datetime(2030, 3, 30, 23, 15, tzinfo=UTC)
    assert next_fire(timing, first) == first + timedelta(minutes=15)


def test_interval_across_dst_is_real_time():
    timing = Timing.make(every=3600)
    start, end = day(PARIS, 2030, 3, 31)
    assert len(fires(timing, start, end)) == 23  # a 23-hour day
    start, end = day(PARIS, 2030, 10, 27)
    assert len(fires(timing, start, end)) == 25


def test_one_off_fires_once_even_if_in_the_past():
    at = datetime(2030, 5, 1, 9, tzinfo=PARIS)
    timing = Timing.make(at=at)
    assert first_fire(timing, at + timedelta(days=1)) == at  # still due once
    assert next_fire(timing, at - timedelta(seconds=1)) == at
    assert next_fire(timing, at) is None


# -- catch-up -----------------------------------------------------------------------------------------------
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_on_time_fire_enqueues_the_due_tick():
    timing = Timing.make(every=10)
    for catch_up in ("skip", "all"):
        result = plan(timing, T0, T0 + timedelta(milliseconds=3), catch_up=catch_up)
        assert result.ticks == (T0,) and result.next_fire_at == T0 + timedelta(seconds=10)
        assert not result.skipped and not result.expired


def test_skip_merges_missed_ticks_into_one_for_the_latest():
    timing = Timing.make(every=10)
    result = plan(timing, T0, T0 + timedelta(seconds=95), catch_up="skip")
    assert result.ticks == (T0 + timedelta(seconds=90),)
    assert result.next_fire_at == T0 + timedelta(seconds=100) and result.skipped


def test_skip_after_a_long_cron_outage_is_cheap_and_resumes():
    timing = Timing.make(cron="* * * * *", tz="UTC")
    now = T0 + timedelta(days=200, seconds=30)
    result = plan(timing, T0, now, catch_up="skip")
    assert result.ticks == (now.replace(second=0),) and result.next_fire_at == now.replace(second=0) + timedelta(
        minutes=1
    )


def test_all_fires_every_missed_tick_in_batches():
    timing = Timing.make(every=1)
    now = T0 + timedelta(seconds=250.5)
    first = plan(timing, T0, now, catch_up="all")
    assert len(first.ticks) == MAX_TICKS_PER_FIRE and first.ticks[0] == T0
    assert first.next_fire_at == T0 + timedelta(seconds=MAX_TICKS_PER_FIRE) <= now  # still due: next pass goes on
    second = plan(timing, first.next_fire_at, now, catch_up="all")
    third = plan(timing, second.next_fire_at, now, catch_up="all")
    ticks = first.ticks + second.ticks + third.ticks
    assert ticks == tuple(T0 + timedelta(seconds=i) for i in range(251))
    assert third.next_fire_at == T0 + timedelta(seconds=251)


def test_expires_drops_ticks_whose_job_would_be_cancelled_unrun():
    timing = Timing.make(every=10)
    now = T0 + timedelta(seconds=1000)
    result = plan(timing, T0, now, catch_up="all", expires=timedelta(seconds=35))
    assert result.ticks == tuple(now - timedelta(seconds=s) for s in (30, 20, 10, 0)) and result.expired
    result = plan(timing, T0, T0 + timedelta(seconds=15), catch_up="skip", expires=timedelta(seconds=5))
    assert result.ticks == () and result.expired and result.next_fire_at == T0 + timedelta(seconds=20)


def test_unique_keeps_only_the_latest_tick():
    timing = Timing.make(every=10)
    result = plan(timing, T0, T0 + timedelta(seconds=30), catch_up="all", unique=True)
    assert result.ticks == (T0 + timedelta(seconds=30),) and result.skipped


def test_plan_refuses_a_tick_not_yet_due():
    with pytest.raises(ValueError, match="not yet due"):
        plan(Timing.make(every=10), T0, T0 - timedelta(seconds=1))


# -- properties ---------------------------------------------------------------------------------------------
DST_DAYS = [datetime(2030, 3, 31, tzinfo=UTC), datetime(2030, 10, 27, tzinfo=UTC), datetime(2030, 3, 10, tzinfo=UTC)]
DST_DAYS += [datetime(2030, 11, 3, tzinfo=UTC), datetime(2030, 4, 7, tzinfo=UTC), datetime(2030, 10, 6, tzinfo=UTC)]
instants = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)),
    # near the 2030 transitions of Paris, New York and Lord Howe (a 30-minute shift), where the bugs live
    st.builds(lambda d, s: d + timedelta(seconds=s), st.sampled_from(DST_DAYS), st.integers(-2 * 86400, 2 * 86400)),
)
zones = st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"])
expressions = st.sampled_from(["30 2 * * *", "*/15 * * * *", "0 */3 * * *", "45 1 * * 0", "0 0 1 * *", "5 2-3 * * *"])


@settings(max_examples=150, deadline=None)
@given(after=instants, tz=zones, expression=expressions)
def test_next_fire_is_the_first_tick_after(after, tz, expression):
    timing = Timing.make(cron=expression, tz=tz)
    tick = next_fire(timing, after)
    assert tick is not None and tick > after
    # no tick in between: stepping back from `tick` finds nothing after `after`
    assert next_fire(timing, tick - timedelta(microseconds=1)) == tick
    following = next_fire(timing, tick)
    assert following is not None and following > tick


@settings(max_examples=60, deadline=None)
@given(start=instants, tz=zones, expression=expressions)
def test_ticks_never_repeat_a_wall_clock_time_of_a_fixed_schedule(start, tz, expression):
    timing = Timing.make(cron=expression, tz=tz)
    ticks = fires(timing, start, start + timedelta(days=2))
    assert ticks == sorted(set(ticks))
    if not timing.wildcard:
        walls = [t.astimezone(ZoneInfo(tz)).replace(tzinfo=None) for t in ticks]
        assert len(walls) == len(set(walls))


@settings(max_examples=100, deadline=None)
@given(
    due=instants,
    late=st.floats(min_value=0, max_value=5000),
    every=st.sampled_from([1, 7, 60, 3600]),
    catch_up=st.sampled_from(["skip", "all"]),
)
def test_plans_cover_each_due_tick_at_most_once_and_resume_after_now(due, late, every, catch_up):
    timing = Timing.make(every=every)
    due = next_fire(timing, due)
    now = due + timedelta(seconds=late)
    fired: list[datetime] = []
    current = due
    while current is not None and current <= now:
        result = plan(timing, current, now, catch_up=catch_up)
        assert all(current <= t <= now for t in result.ticks)
        fired.extend(result.ticks)
        assert result.next_fire_at is not None and result.next_fire_at > result.ticks[-1]
        current = result.next_fire_at
    assert fired == sorted(set(fired)) and current > now
    assert last_fire_at_or_before(timing, now, due) == fired[-1]
    if catch_up == "all":
        # count from the datetime actually used: timedelta rounds `late` to whole microseconds
        assert len(fired) == (now - due) // timedelta(seconds=every) + 1
    else:
        assert len(fired) == 1
