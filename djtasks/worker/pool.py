"""The job threads of a worker process: a fixed set of daemon threads taking claimed jobs from one queue.

Lighter than ``concurrent.futures.ThreadPoolExecutor`` on the hot path (no future, no work item, no
executor lock per job), and jobs are taken in the order they were claimed: by priority, then due time.
Daemon threads, because a job still running when a stopping process gives up on it has already been
handed back to the queue, and must not keep the process alive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from ..rows import ClaimedJob


class JobThreads:
    def __init__(self, threads: int, run: Callable[[ClaimedJob], None]) -> None:
        self._queue: queue.SimpleQueue[ClaimedJob] = queue.SimpleQueue()
        self._run = run
        self._threads = [
            threading.Thread(target=self._loop, name=f"djtasks-job-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, row: ClaimedJob) -> None:
        self._queue.put(row)

    def _loop(self) -> None:
        get, run = self._queue.get, self._run
        while True:
            run(get())
