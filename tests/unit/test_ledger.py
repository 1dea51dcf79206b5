"""The worker process's ledger of in-flight jobs and the start board its supervisor reads: every transition."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime

import pytest

from djtasks.ids import uuid7
from djtasks.worker.ledger import Ledger, LedgerFull
from djtasks.worker.startboard import SLOT, StartBoard

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def job(attempt: int = 1) -> dict:
    return {"id": uuid7(), "name": "tests.job", "attempt": attempt, "status": "running"}


def counts(ledger: Ledger) -> tuple[int, int, int, int, int]:
    return ledger.waiting, ledger.running, ledger.finished, ledger.unfinished, ledger.outstanding


def test_a_job_goes_claimed_started_finished_recorded():
    board = StartBoard(4)
    ledger = Ledger(4, board)
    a, b = job(), job(attempt=3)
    assert ledger.claim([a, b]) is True  # empty before: the completer is told to watch
    assert counts(ledger) == (2, 0, 0, 2, 2)
    assert board.started() == []  # claimed ahead is not started

    assert ledger.start(a["id"], NOW) is a
    assert counts(ledger) == (1, 1, 0, 2, 2)
    assert board.started() == [(a["id"], 1)]
    assert ledger.started_ids() == {a["id"]}

    assert ledger.finish(a["id"]) == 1  # unfinished left: b waits
    assert counts(ledger) == (1, 0, 1, 1, 2)
    assert board.started() == [(a["id"], 1)]  # until its outcome is recorded the supervisor must charge it

    ledger.recorded([a["id"]])
    assert counts(ledger) == (1, 0, 0, 1, 1) and ledger.done == 1
    assert board.started() == []
    assert ledger.known_ids() == {b["id"]}
    assert ledger.claim([job()]) is False  # not empty: no wake-up needed


def test_start_is_refused_for_unknown_or_already_started_jobs():
    ledger = Ledger(2)
    a = job()
    ledger.claim([a])
    assert ledger.start(uuid7(), NOW) is None
    assert ledger.start(a["id"], NOW) is a
    assert ledger.start(a["id"], NOW) is None
    assert counts(ledger) == (0, 1, 0, 1, 1)


def test_recorded_ignores_jobs_not_finished():
    ledger = Ledger(2)
    a = job()
    ledger.claim([a])
    ledger.recorded([a["id"], uuid7()])  # a fenced-off outcome of a job never held, or not finished yet
    assert counts(ledger) == (1, 0, 0, 1, 1) and ledger.done == 0


def test_stop_starting_drops_the_jobs_claimed_ahead_and_refuses_later_starts():
    board = StartBoard(4)
    ledger = Ledger(4, board)
    running, ahead, later = job(), job(), job()
    ledger.claim([running, ahead, later])
    ledger.start(running["id"], NOW)
    ledger.stop_starting()
    assert counts(ledger) == (0, 1, 0, 1, 1)
    assert ledger.known_ids() == {running["id"]}  # what the early release keeps
    assert ledger.start(later["id"], NOW) is None  # a thread that took it before the stop
    assert board.started() == [(running["id"], 1)]
    ledger.finish(running["id"])
    ledger.recorded([running["id"]])
    assert counts(ledger) == (0, 0, 0, 0, 0)


def test_slots_are_reused_and_the_capacity_is_enforced():
    ledger = Ledger(2, StartBoard(2))
    a, b = job(), job()
    ledger.claim([a, b])
    with pytest.raises(LedgerFull):
        ledger.claim([job()])
    for j in (a, b):
        ledger.start(j["id"], NOW)
        ledger.finish(j["id"])
    ledger.recorded([a["id"], b["id"]])
    c, d = job(), job()
    ledger.claim([c, d])
    ledger.start(d["id"], NOW)
    assert ledger.board.started() == [(d["id"], 1)]
    with pytest.raises(ValueError):
        Ledger(3, StartBoard(2))


def test_a_job_claimed_again_runs_as_its_new_claim_once_the_old_run_is_settled():
    """Declared dead while alive, the worker's rows were handed back and it claimed some of them anew."""
    board = StartBoard(4)
    ledger = Ledger(4, board)
    waiting, running = job(attempt=1), job(attempt=1)
    ledger.claim([waiting, running])
    ledger.start(running["id"], NOW)
    waiting_again, running_again = {**waiting, "attempt": 2}, {**running, "attempt": 2}
    ledger.claim([waiting_again, running_again])
    assert counts(ledger) == (1, 1, 0, 2, 2)  # counted once each
    assert ledger.start(waiting["id"], NOW) is waiting_again  # not started yet: the new claim runs
    assert ledger.start(running["id"], NOW) is None  # the old run goes on
    ledger.finish(running["id"])
    assert ledger.recorded([running["id"]]) == [running_again]  # its (fenced) outcome settled: run the new one
    assert counts(ledger) == (1, 1, 0, 2, 2) and board.started() == [(waiting["id"], 2)]
    assert ledger.start(running["id"], NOW) is running_again
    assert sorted(a for _, a in board.started()) == [2, 2]
    ledger.finish(running["id"])
    ledger.claim([{**running, "attempt": 3}])  # and again; this time the old run's outcome is written
    assert ledger.recorded([running["id"]], written={running["id"]}) == []
    assert running["id"] not in ledger.known_ids()


def test_start_marks_are_taken_once_oldest_first_and_never_for_finished_jobs():
    ledger = Ledger(4)
    a, b, c = job(), job(), job()
    ledger.claim([a, b, c])
    assert ledger.next_mark_due() is None
    ledger.start(a["id"], NOW)
    ledger.start(b["id"], NOW)
    ledger.start(c["id"], NOW)
    assert ledger.next_mark_due() is not None
    assert ledger.take_marks(time.monotonic() - 60) == []  # none started a minute ago
    ledger.finish(b["id"])  # finished first: its outcome carries its start
    marks = ledger.take_marks(time.monotonic())
    assert [m["id"] for m in marks] == [a["id"], c["id"]]
    assert marks[0] == {"id": a["id"], "attempt": 1, "started_at": NOW}
    assert ledger.take_marks(time.monotonic()) == [] and ledger.next_mark_due() is None
    ledger.finish(a["id"])  # a marked job finishes as usual
    assert counts(ledger) == (0, 1, 2, 1, 3)


def test_wait_returns_when_the_condition_holds_or_times_out():
    ledger = Ledger(2)
    a = job()
    ledger.claim([a])
    ledger.start(a["id"], NOW)
    assert ledger.wait(lambda led: led.running == 0, 0.01) is False
    threading.Timer(0.05, ledger.finish, args=(a["id"],)).start()
    assert ledger.wait(lambda led: led.running == 0, 5) is True


def test_threads_moving_jobs_concurrently_keep_the_counts_exact():
    ledger = Ledger(1000)
    jobs = [job() for _ in range(1000)]
    ledger.claim(jobs)

    def run(part):
        for j in part:
            assert ledger.start(j["id"], NOW)
            ledger.finish(j["id"])

    threads = [threading.Thread(target=run, args=(jobs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts(ledger) == (0, 0, 1000, 0, 1000)
    ledger.recorded(j["id"] for j in jobs)
    assert counts(ledger) == (0, 0, 0, 0, 0) and ledger.done == 1000


def _mark_and_die(capacity, buffer, job_id, attempt):  # runs in a spawned child
    StartBoard(capacity, buffer).mark(1, job_id, attempt)
    import os

    os._exit(0)


def test_the_start_board_is_read_by_the_parent_after_the_child_died():
    ctx = multiprocessing.get_context("spawn")
    board = StartBoard.shared(ctx, 3)
    job_id = uuid7()
    child = ctx.Process(target=_mark_and_die, args=(board.capacity, board.buffer, job_id, 7))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert board.started() == [(job_id, 7)]
    board.clear(1)
    assert board.started() == []


def test_a_torn_slot_reads_as_empty():
    board = StartBoard(1)
    job_id = uuid7()
    board.buffer[: SLOT.size - 4] = job_id.bytes  # the id written, the attempt not yet
    assert board.started() == []
