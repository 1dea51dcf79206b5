"""The prefetch bound: jobs claimed ahead should all start within the window, judged by the slowest name."""

from __future__ import annotations

from djtasks.worker.prefetch import PREFETCH_MAX, PREFETCH_WINDOW_S, UNKNOWN_DURATION_S, Durations


def test_a_name_never_seen_is_not_prefetched():
    durations = Durations()
    assert durations.expected("new") == UNKNOWN_DURATION_S
    assert durations.prefetch(4, ["new"]) == 0
    assert durations.prefetch(4, []) == 0


def test_fast_jobs_are_prefetched_up_to_the_cap():
    durations = Durations()
    durations.observe("fast", 0.00001)
    assert durations.prefetch(4, ["fast"]) == PREFETCH_MAX
    durations.observe("instant", 0.0)
    assert durations.prefetch(1, ["instant"]) == PREFETCH_MAX


def test_prefetch_is_what_the_threads_start_within_the_window():
    durations = Durations()
    durations.observe("one-ms", 0.001)
    assert durations.prefetch(4, ["one-ms"]) == int(PREFETCH_WINDOW_S * 4 / 0.001)  # 80
    assert durations.prefetch(1, ["one-ms"]) == int(PREFETCH_WINDOW_S / 0.001)  # 20


def test_the_slowest_name_in_the_claim_sets_the_bound():
    durations = Durations()
    durations.observe("fast", 0.00001)
    durations.observe("slow", 0.5)
    assert durations.prefetch(4, ["fast", "slow"]) == 0
    assert durations.prefetch(4, ["fast", "never-seen"]) == 0


def test_mean_follows_recent_runs():
    durations = Durations()
    durations.observe("job", 1.0)
    for _ in range(40):
        durations.observe("job", 0.001)
    assert durations.expected("job") < 0.002
    assert durations.prefetch(2, ["job"]) > 0
