"""The ledger: every job a worker process holds, from its claim to its recorded outcome. One per process.

A job moves ``claimed`` (taken by the producer, waiting for a thread) -> ``started`` (a job thread called
it) -> ``finished`` (its outcome is handed to the completer) -> gone (the outcome is written, or fenced off).
Everything that counts jobs reads this one table: the producer's free slots and prefetch (``waiting``,
``unfinished``, ``outstanding``), the low-water wake-up, the completer's start marks and its flush, the
stop (which hands back what never started), the reconnect (which hands back rows it does not list), and
the start board the supervisor reads when the process dies.

In the database every held job is ``running`` (owned by this worker, fenced by its id and attempt); its
``started_at`` stays NULL until the completer writes a start mark (``take_marks``: jobs started at least a
moment ago and still running) or the job's outcome. A job that finishes within that moment costs no extra
write: its outcome carries its start. So a rescuer that finds this worker dead charges an attempt to the
jobs whose start reached the database, and to those on the start board when the supervisor saw the death;
the others were only claimed ahead and go back uncharged.

A stop closes the ledger to starts (``stop_starting``): a job a thread takes after that is not started but
dropped, and the stop hands it back to the queue uncharged.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ..rows import ClaimedJob, StartMark
from .startboard import StartBoard


class Stage(enum.Enum):
    CLAIMED = "claimed"
    STARTED = "started"
    FINISHED = "finished"


@dataclass(slots=True)
class Entry:
    job: ClaimedJob
    slot: int
    stage: Stage = Stage.CLAIMED
    started_at: datetime | None = None
    started_mono: float = 0.0
    reclaimed: ClaimedJob | None = None  # claimed again while this run was going (see ``claim``)


class LedgerFull(RuntimeError):
    """More jobs claimed than the ledger has slots: the producer's limits are broken."""


class Ledger:
    def __init__(self, capacity: int, board: StartBoard | None = None) -> None:
        if board is not None and board.capacity < capacity:
            raise ValueError(f"the start board has {board.capacity} slots, the ledger needs {capacity}")
        self.capacity = capacity
        self.board = board
        # Keyed by the id's 128-bit int: hashing a UUID runs Python code (UUID.__hash__), an int's does not, and
        # each job goes through a dozen lookups here between its claim and its recorded outcome.
        self._entries: dict[int, Entry] = {}
        self._free = list(range(capacity - 1, -1, -1))  # slot numbers, popped from the end
        self._unmarked: dict[int, Entry] = {}  # started, still running, start mark not taken (start order)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._starting = True
        self._watchers = 0  # threads in wait(): only then is a change worth a notify (the hot path skips it)
        self.waiting = 0  # claimed, not started
        self.running = 0  # started, function not returned
        self.finished = 0  # outcome handed to the completer, not recorded yet
        self.done = 0  # outcomes recorded (written or fenced off) since the process started

    # -- counts (read without the lock: each is one int, and every reader tolerates a stale value) ------
    @property
    def unfinished(self) -> int:
        """Claimed jobs whose function has not returned: waiting for a thread or running."""
        return self.waiting + self.running

    @property
    def outstanding(self) -> int:
        """Every job held: its outcome is not recorded yet."""
        return len(self._entries)

    # -- producer ----------------------------------------------------------------------------------------
    def claim(self, jobs: Iterable[ClaimedJob]) -> bool:
        """Enter claimed jobs; True if the ledger was empty before (the completer may be asleep for good)."""
        with self._lock:
            was_empty = not self._entries
            for job in jobs:
                key = job["id"].int
                entry = self._entries.get(key)
                if entry is not None:
                    # Claimed again while held: this worker was declared dead (a pause past WORKER_TIMEOUT), its
                    # rows were handed back, and it claimed one anew. The new claim (its attempt) is the one
                    # to run: now if the old one had not started, else once the old run's outcome is settled.
                    if entry.stage is Stage.CLAIMED:
                        entry.job = job
                    else:
                        entry.reclaimed = job
                    continue
                if not self._free:
                    raise LedgerFull(f"more than {self.capacity} jobs claimed")
                self._entries[key] = Entry(job, self._free.pop())
                self.waiting += 1
        return was_empty

    # -- job threads -------------------------------------------------------------------------------------
    def start(self, job_id: UUID, now: datetime) -> ClaimedJob | None:
        """A thread is about to run the job: the claim to run, or None if the process is stopping (the job is
        dropped, to be handed back) or does not hold it unstarted. Listed on the start board before this
        returns."""
        with self._lock:
            key = job_id.int
            entry = self._entries.get(key)
            if entry is None or entry.stage is not Stage.CLAIMED:
                return None
            self.waiting -= 1
            if not self._starting:
                self._drop(entry)
                self._changed.notify_all()
                return None
            entry.stage, entry.started_at, entry.started_mono = Stage.STARTED, now, time.monotonic()
            self.running += 1
            self._unmarked[key] = entry
            if self.board is not None:
                self.board.mark(entry.slot, job_id, entry.job["attempt"])
            return entry.job

    def finish(self, job_id: UUID) -> int:
        """The job's function returned (its outcome goes to the completer next); returns ``unfinished``."""
        with self._lock:
            key = job_id.int
            entry = self._entries[key]
            entry.stage = Stage.FINISHED
            self._unmarked.pop(key, None)
            self.running -= 1
            self.finished += 1
            if self._watchers:
                self._changed.notify_all()
            return self.waiting + self.running

    def started_at(self, job_id: UUID) -> datetime | None:
        """When the job held under ``job_id`` started (None if it has not)."""
        entry = self._entries.get(job_id.int)
        return entry.started_at if entry is not None else None

    # -- completer ---------------------------------------------------------------------------------------
    def take_marks(self, started_before: float) -> list[StartMark]:
        """Start marks to write: jobs still running that started before ``started_before`` (monotonic).
        A job finished by then is not among them: its outcome carries its start (and the statement that
        records a batch must not touch a row twice)."""
        with self._lock:
            marks: list[StartMark] = []
            for entry in self._unmarked.values():
                if entry.started_mono > started_before:
                    break  # in start order: the rest started later still
                assert entry.started_at is not None
                marks.append({"id": entry.job["id"], "attempt": entry.job["attempt"], "started_at": entry.started_at})
            for mark in marks:
                del self._unmarked[mark["id"].int]
            return marks

    def next_mark_due(self) -> float | None:
        """Monotonic time the oldest unmarked start was made, or None if there is none."""
        with self._lock:
            for entry in self._unmarked.values():
                return entry.started_mono
            return None

    def recorded(self, job_ids: Iterable[UUID], written: Container[UUID] = ()) -> list[ClaimedJob]:
        """Outcomes written (``written``) or fenced off: the jobs leave the ledger. Returns the jobs claimed
        again meanwhile (see ``claim``) whose old outcome was fenced off, waiting again: the caller hands them
        to the job threads. (A written one finished the row, so the new claim has nothing left to run.)"""
        again: list[ClaimedJob] = []
        with self._lock:
            for job_id in job_ids:
                entry = self._entries.get(job_id.int)
                if entry is None or entry.stage is not Stage.FINISHED:
                    continue
                self.finished -= 1
                self.done += 1
                if entry.reclaimed is not None and self._starting and job_id not in written:
                    if self.board is not None:
                        self.board.clear(entry.slot)
                    entry.job, entry.reclaimed, entry.stage, entry.started_at = (
                        entry.reclaimed,
                        None,
                        Stage.CLAIMED,
                        None,
                    )
                    self.waiting += 1
                    again.append(entry.job)
                    continue
                self._drop(entry)
            if self._watchers:
                self._changed.notify_all()
        return again

    # -- stopping and reconnecting -------------------------------------------------------------------------
    def stop_starting(self) -> None:
        """No job starts from now on; the jobs still waiting for a thread are dropped (to be handed back)."""
        with self._lock:
            self._starting = False
            for entry in [e for e in self._entries.values() if e.stage is Stage.CLAIMED]:
                self.waiting -= 1
                self._drop(entry)
            self._changed.notify_all()

    def known_ids(self) -> set[UUID]:
        """Every job held (so a reconnect hands back only rows it does not list)."""
        with self._lock:
            return {e.job["id"] for e in self._entries.values()}

    def started_ids(self) -> set[UUID]:
        """Jobs started whose outcome is not recorded yet."""
        with self._lock:
            return {e.job["id"] for e in self._entries.values() if e.stage is not Stage.CLAIMED}

    def wait(self, predicate: Callable[[Ledger], bool], timeout: float | None) -> bool:
        """Wait until ``predicate(self)`` holds (checked on every change); False on timeout."""
        with self._changed:
            self._watchers += 1
            try:
                return self._changed.wait_for(lambda: predicate(self), timeout)
            finally:
                self._watchers -= 1

    def _drop(self, entry: Entry) -> None:
        key = entry.job["id"].int
        del self._entries[key]
        self._unmarked.pop(key, None)
        if self.board is not None and entry.stage is not Stage.CLAIMED:
            self.board.clear(entry.slot)
        self._free.append(entry.slot)
