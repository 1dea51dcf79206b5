"""Flow-control arithmetic: rate strings, the sliding-window rate limiter (time as a parameter), claim caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from djtasks.conf import SettingError, parse
from djtasks.flow import Limits, RateLimit, advance, claim_cap, parse_rate, rate_allowance

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "count", "period", "text"),
    [
        ("100/m", 100, 60.0, "100/m"),
        ("10/s", 10, 1.0, "10/s"),
        (" 500 / h ", 500, 3600.0, "500/h"),
        (5, 5, 1.0, "5/s"),
        ("5", 5, 1.0, "5/s"),
        (0.5, 1, 2.0, "0.5/s"),
    ],
)
def test_parse_rate(value, count, period, text):
    rate = parse_rate(value)
    assert (rate.count, rate.period, rate.text) == (count, period, text)


@pytest.mark.parametrize("value", ["100 per minute", "0/s", "10/d", "", "-5", 0, -1, True, float("inf"), None])
def test_parse_rate_rejects(value):
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate(value)


def starts_over(rate: RateLimit, seconds: float, step: float) -> list[datetime]:
    """Simulate claimers asking every ``step`` seconds, each taking all it is allowed; return start times."""
    tat = None
    starts = []
    now = T0
    while now < T0 + timedelta(seconds=seconds):
        allowed = rate_allowance(rate, tat, now)
        starts += [now] * allowed.starts
        tat = advance(rate, tat, now, allowed.starts)
        now += timedelta(seconds=step)
    return starts


def max_in_window(starts: list[datetime], window: float) -> int:
    best = 0
    j = 0
    for i, start in enumerate(starts):
        while starts[j] <= start - timedelta(seconds=window):
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize(
    ("text", "step", "least"),
    [
        ("10/s", 0.0001, 0.99),
        ("60/s", 0.0001, 0.98),
        ("60/s", 0.013, 0.75),
        ("100/m", 0.05, 0.98),
        ("1000/s", 0.0001, 0.98),
    ],
)
def test_never_more_than_the_limit_in_any_window_and_close_to_it_on_average(text, step, least):
    """Claimers asking every ``step`` seconds: no window of the period (wherever it starts) holds more than
    the limit; over five periods the rate is close to the limit when they ask often (a claimer that asks late
    loses that time: the limiter never makes up for it with a burst)."""
    rate = parse_rate(text)
    starts = starts_over(rate, rate.period * 5, step)
    assert max_in_window(starts, rate.period) <= rate.count
    assert len(starts) >= 5 * rate.count * least


def test_a_token_bucket_burst_is_not_allowed_after_idling():
    """After a long idle time the limiter allows one start (two from 20 per period, 1% of the limit from 200),
    not a full window at once."""
    tat = T0 - timedelta(hours=1)
    assert rate_allowance(parse_rate("10/s"), tat, T0).starts == 1
    assert rate_allowance(parse_rate("60/s"), tat, T0).starts == 2
    big = parse_rate("1000/s")
    assert rate_allowance(big, None, T0).starts == 10


def test_spread_out_and_wait_names_the_next_start():
    rate = parse_rate("10/s")
    tat = advance(rate, None, T0, 1)
    assert tat == T0 + timedelta(seconds=0.1)
    allowed = rate_allowance(rate, tat, T0 + timedelta(seconds=0.04))
    assert allowed.starts == 0
    assert allowed.wait == pytest.approx(0.06, abs=1e-5)
    assert rate_allowance(rate, tat, tat).starts == 1
    fast = parse_rate("60/s")  # burst 2: a claim that comes late by less than an interval loses nothing
    tat = advance(fast, None, T0, 2)
    assert tat == T0 + timedelta(seconds=2 / 59)
    assert rate_allowance(fast, tat, T0 + timedelta(seconds=1 / 59)).starts == 1
    assert rate_allowance(fast, tat, T0 + timedelta(seconds=1 / 118)).starts == 0


def test_claim_cap():
    now = T0
    assert claim_cap(Limits(concurrency=3), running=1, tat=None, now=now, free=4).starts == 2
    assert claim_cap(Limits(concurrency=3), running=3, tat=None, now=now, free=4).starts == 0
    assert claim_cap(Limits(concurrency=3), running=0, tat=None, now=now, free=1).starts == 1
    assert claim_cap(Limits(concurrency=3, paused=True), running=0, tat=None, now=now, free=4).starts == 0
    rated = Limits(rate_limit=parse_rate("1/s"))
    assert claim_cap(rated, running=0, tat=None, now=now, free=4).starts == 1
    held = claim_cap(rated, running=0, tat=now + timedelta(seconds=0.4), now=now, free=4)
    assert (held.starts, held.wait) == (0, pytest.approx(0.4))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"concurrency": 0}, ["'emails'", "concurrency", "0"]),
        ({"concurrency": -2}, ["'emails'", "-2"]),
        ({"rate_limit": "100 per minute"}, ["'emails'", "'100 per minute'"]),
        ({"paused": "yes"}, ["'emails'", "paused", "'yes'"]),
    ],
)
def test_bad_queue_options_name_queue_and_value(options, words):
    with pytest.raises(SettingError) as info:
        parse({"QUEUES": {"default": {}, "emails": options}})
    for word in words:
        assert word in str(info.value)
    assert info.value.hint


def test_settings_rate_limit_is_parsed():
    conf = parse({"QUEUES": {"default": {}, "emails": {"rate_limit": "100/m", "concurrency": 4, "paused": True}}})
    emails = conf.QUEUES["emails"]
    assert (emails.rate_limit.count, emails.rate_limit.period) == (100, 60.0)
    assert (emails.concurrency, emails.paused) == (4, True)
